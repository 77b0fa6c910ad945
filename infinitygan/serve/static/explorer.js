// The explorer page: a Leaflet map of the infinite image of one seed.
//
// Map coordinates: Leaflet's CRS.Simple, one map unit = one native pixel at zoom 0;
// lng = image x, lat = -image y (image rows grow downwards). Leaflet zoom 0 is native
// resolution and zoom -k is the server's zoom-out level k (tiles of 256 * 2^k pixels);
// positive zooms magnify the native tiles in the browser.
// The URL hash holds seed, centre (x, y in native pixels) and zoom: a shareable link.
(function () {
  "use strict";

  function parseHash() {
    const out = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const [k, v] = part.split("=");
      if (k && v !== undefined && /^-?\d+$/.test(v)) out[k] = Number(v);
    }
    return out;
  }

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

  fetch("/api/info").then((r) => r.json()).then(start);

  function start(info) {
    const minZoom = -info.max_zoom;
    const h = parseHash();
    let seed = Number.isSafeInteger(h.seed) && h.seed >= 0 ? h.seed : 0;
    const xLim = info.x_limit - 1;
    const bounds = L.latLngBounds([[-info.band, -info.x_limit], [info.band, info.x_limit]]);

    const map = L.map("map", {
      crs: L.CRS.Simple, minZoom: minZoom, maxZoom: 2, zoomSnap: 1,
      maxBounds: bounds, maxBoundsViscosity: 1.0, attributionControl: true,
    });
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');

    const Layer = L.TileLayer.extend({
      getTileUrl: function (c) {
        return "/tiles/" + seed + "/" + (-c.z) + "/" + c.x + "/" + c.y + ".png" + (sceneSuffix ? sceneSuffix() : "");
      },
    });
    let sceneSuffix = null;
    let hashExtra = (location.hash.match(/&scene=[^&]*/) || [""])[0];  // the scene tools' part
    const layer = new Layer("", {
      tileSize: info.tile, minZoom: minZoom, maxZoom: 2, minNativeZoom: minZoom, maxNativeZoom: 0,
      bounds: bounds, noWrap: true, keepBuffer: 2, updateWhenIdle: false,
      attribution: "InfinityGAN (" + info.model + ")",
    }).addTo(map);

    // tiles being rendered: counted from the layer's events and shown in the panel
    const busy = document.getElementById("busy");
    let loading = 0;
    function showBusy() {
      busy.hidden = loading <= 0;
      busy.textContent = "rendering " + loading + (loading === 1 ? " tile" : " tiles") + "\u2026";
    }
    layer.on("tileloadstart", function () { loading += 1; showBusy(); });
    layer.on("tileload tileerror tileabort", function () { loading = Math.max(0, loading - 1); showBusy(); });
    layer.on("load", function () { loading = 0; showBusy(); });

    const x0 = clamp(Number.isSafeInteger(h.x) ? h.x : 0, -xLim, xLim);
    const y0 = clamp(Number.isSafeInteger(h.y) ? h.y : 0, -info.band, info.band);
    const z0 = clamp(Number.isSafeInteger(h.z) ? -h.z : 0, minZoom, 2);
    map.setView([-y0, x0], z0, { animate: false });

    const seedInput = document.getElementById("seed");
    const where = document.getElementById("where");
    seedInput.value = seed;
    seedInput.max = info.seed_limit;

    function state() {
      const c = map.getCenter();
      return { seed: seed, x: Math.round(c.lng), y: Math.round(-c.lat), z: -map.getZoom() };
    }

    function writeHash() {
      const s = state();
      const hash = "#seed=" + s.seed + "&x=" + s.x + "&y=" + s.y + "&z=" + s.z + hashExtra;
      if (location.hash !== hash) history.replaceState(null, "", hash);
      where.textContent = "x " + s.x + "  y " + s.y + "  zoom " + (s.z > 0 ? "1/" + (1 << s.z) : (1 << -s.z) + "x");
    }

    function setSeed(s) {
      if (!Number.isSafeInteger(s) || s < 0 || s > info.seed_limit || s === seed) return;
      seed = s;
      seedInput.value = s;
      layer.redraw();
      writeHash();
      map.fire("seedchange", { seed: s });
    }

    map.on("moveend zoomend", writeHash);
    document.getElementById("panel").addEventListener("submit", function (e) {
      e.preventDefault();
      setSeed(Number(seedInput.value));
    });
    document.getElementById("random").addEventListener("click", function () {
      setSeed(Math.floor(Math.random() * 1e9));
    });
    window.addEventListener("hashchange", function () {
      const h2 = parseHash();
      if (Number.isSafeInteger(h2.seed)) setSeed(h2.seed);
      if (Number.isSafeInteger(h2.x) && Number.isSafeInteger(h2.y)) {
        const z = Number.isSafeInteger(h2.z) ? clamp(-h2.z, minZoom, 2) : map.getZoom();
        map.setView([-clamp(h2.y, -info.band, info.band), clamp(h2.x, -xLim, xLim)], z);
      }
    });
    writeHash();

    // the hook of scene tools (style centres, resampled regions): scenes.js sets it up when
    // the server has them
    window.explorer = {
      map: map, layer: layer, info: info, seed: function () { return seed; },
      setSceneSuffix: function (f) { sceneSuffix = f; layer.redraw(); },
      setHashExtra: function (s) { hashExtra = s; writeHash(); },
    };
    if (info.scenes) {
      const s = document.createElement("script");
      s.src = "/static/scenes.js";
      document.body.appendChild(s);
    }
  }
})();
