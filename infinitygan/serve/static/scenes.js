// Scene tools of the explorer (loaded when the server has scenes): place style centres and
// resample regions with the mouse. The scene lives in the URL hash (scene=...) like the seed and
// position, is registered with the server (POST /api/scenes/SEED -> id) and its tiles are
// fetched with ?scene=ID.
(function () {
  "use strict";
  const ex = window.explorer;
  const map = ex.map;
  const tools = document.getElementById("scene-tools");
  tools.hidden = false;
  let scene = { centres: [], resample: [] };
  let mode = null;
  const drawn = L.layerGroup().addTo(map);

  function button(label, title, onclick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", onclick);
    tools.appendChild(b);
    return b;
  }
  const bCentre = button("style centre", "click the map to place a style centre (a random style)", function () { setMode("centre"); });
  const bResample = button("resample", "click the map to resample a 256 x 256 region", function () { setMode("resample"); });
  button("clear", "remove every centre and resampled region", function () { scene = { centres: [], resample: [] }; update(); });

  function setMode(m) {
    mode = mode === m ? null : m;
    bCentre.classList.toggle("active", mode === "centre");
    bResample.classList.toggle("active", mode === "resample");
    map.getContainer().style.cursor = mode ? "crosshair" : "";
  }

  function randomSeed() { return Math.floor(Math.random() * 1e9); }

  let previous = null;
  const note = document.createElement("span");
  tools.appendChild(note);

  map.on("click", function (e) {
    if (!mode) return;
    previous = JSON.parse(JSON.stringify(scene));
    const x = Math.round(e.latlng.lng), y = Math.round(-e.latlng.lat);
    if (mode === "centre" && scene.centres.length < 16) {
      scene.centres.push({ seed: randomSeed(), point: [x, y] });
    } else if (mode === "resample" && scene.resample.length < 16) {
      scene.resample.push({ region: [x - 128, y - 128, 256, 256], seed: randomSeed() });
    }
    update();
  });

  function draw() {
    drawn.clearLayers();
    for (const c of scene.centres) {
      L.circleMarker([-c.point[1], c.point[0]], { radius: 7, color: "#000", weight: 2, fillColor: "#fd4", fillOpacity: 1 })
        .bindTooltip("style of seed " + c.seed).addTo(drawn);
    }
    for (const r of scene.resample) {
      const [x, y, w, h] = r.region;
      L.rectangle([[-y, x], [-(y + h), x + w]], { color: "#fd4", weight: 1, fill: false, dashArray: "4" })
        .bindTooltip("resampled with seed " + r.seed).addTo(drawn);
    }
  }

  function encoded() { return encodeURIComponent(JSON.stringify(scene)); }

  function empty() { return scene.centres.length === 0 && scene.resample.length === 0; }

  function update() {
    draw();
    ex.setHashExtra(empty() ? "" : "&scene=" + encoded());
    if (empty()) { ex.setSceneSuffix(null); return; }
    const seed = ex.seed();
    fetch("/api/scenes/" + seed, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(scene) })
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function ([ok, j]) {
        note.textContent = ok ? "" : "refused: " + j.error;
        if (!ok) { if (previous) { scene = previous; previous = null; update(); } return; }
        if (ex.seed() === seed) ex.setSceneSuffix(function () { return "?scene=" + j.id; });
      });
  }

  // A scene the server no longer knows (its cache evicted it, or it restarted) answers 404 to
  // its tiles: register it again (same content, same id) and reload, at most once per 5 s.
  let lastRetry = 0;
  ex.layer.on("tileerror", function () {
    if (empty() || Date.now() - lastRetry < 5000) return;
    lastRetry = Date.now();
    update();
  });

  map.on("seedchange", update);
  const m = location.hash.match(/[#&]scene=([^&]*)/);
  if (m) {
    try {
      const s = JSON.parse(decodeURIComponent(m[1]));
      scene = { centres: s.centres || [], resample: s.resample || [] };
    } catch (err) { /* a broken link: start without a scene */ }
  }
  update();
})();
