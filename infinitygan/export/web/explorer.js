// The explorer without a server: every tile is computed in this page. The canvas (latents,
// noise, coordinates) comes from canvas.js, the networks are the exported ONNX graphs run by
// onnxruntime-web: on WebGPU where the browser gives an adapter, on WebAssembly otherwise
// (`?backend=wasm` or `?backend=webgpu` in the address forces one). Same map as `infinitygan serve`: Leaflet CRS.Simple, one map
// unit = one native pixel, lng = x, lat = -y; seed and position in the URL hash.
(function () {
  "use strict";
  const C = window.InfinityCanvas;
  const FORMAT_VERSION = 1;  // infinitygan/export/onnx.py FORMAT_VERSION

  function rint(v) {  // round half to even, as numpy's rint
    const r = Math.round(v);
    return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  function parseHash() {
    const out = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const [k, v] = part.split("=");
      if (k && v !== undefined && /^-?[0-9]+$/.test(v)) out[k] = Number(v);
    }
    return out;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = resolve;
      el.onerror = () => reject(new Error("cannot load " + src));
      document.head.appendChild(el);
    });
  }

  // The backend and its onnxruntime-web build. WebGPU: ort.webgpu.min.js (its WebAssembly part
  // is the asyncify build, 3x slower than the plain one when it has to run on the CPU), so it is
  // loaded only when navigator.gpu gives an adapter; otherwise the plain WebAssembly build.
  async function chooseBackend() {
    const asked = new URLSearchParams(location.search).get("backend");
    if (asked === "wasm" || asked === "webgpu") return asked;
    if (asked !== null) throw new Error("unknown backend " + JSON.stringify(asked) + " (wasm or webgpu)");
    try {
      if (navigator.gpu && await navigator.gpu.requestAdapter()) return "webgpu";
    } catch (e) { /* no usable adapter: WebAssembly */ }
    return "wasm";
  }

  async function openSessions(manifest) {
    const backend = await chooseBackend();
    await loadScript(backend === "webgpu" ? "ort/ort.webgpu.min.js" : "ort/ort.wasm.min.js");
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
    ort.env.wasm.numThreads = 1;  // no SharedArrayBuffer needed: any static host serves it
    ort.env.logLevel = "error";
    async function open(ep) {
      const session = {};
      for (const k of ["mapping", "structure", "texture"]) {
        session[k] = await ort.InferenceSession.create("model/" + manifest.graphs[k].file, { executionProviders: [ep],
          logSeverityLevel: 3 });  // errors only: not the warning that shape ops stay on the CPU
      }
      return session;
    }
    try {
      return { backend: backend, session: await open(backend) };
    } catch (e) {
      if (backend !== "webgpu") throw e;
      console.warn("WebGPU failed (" + e + "), running on WebAssembly");  // the build has both
      return { backend: "wasm", session: await open("wasm") };
    }
  }

  async function start() {
    const manifest = await (await fetch("model/manifest.json")).json();
    // the page and the graphs are written together by one `export --web`; refuse a mix
    if (manifest.format !== "infinitygan-export" || manifest.format_version !== FORMAT_VERSION || !manifest.map) {
      throw new Error("model/ is not an export of this page's format (" + manifest.format_version + ")");
    }
    const { backend, session } = await openSessions(manifest);
    const map_ = manifest.map, geo = manifest.geometry, lat = manifest.latents;
    const LAT = geo.lattice, m = geo.gs_margin, T = map_.tile;
    const cells = Math.ceil((T + geo.shrink) / LAT);  // the zS window of a map tile
    const h = parseHash();
    let seed = Number.isSafeInteger(h.seed) && h.seed >= 0 ? h.seed : 0;
    const wCache = new Map();

    async function styles(s) {  // W+ of a seed: mapping(zg) in every slot
      if (!wCache.has(s)) {
        const zg = C.gaussianField(C.streamKey(BigInt(s), "zg"), lat.zg_dim, [0n], [0n]);
        const w = (await session.mapping.run({ zg: new ort.Tensor("float32", zg, [1, lat.zg_dim]) })).w.data;
        const st = new Float32Array(lat.n_styles * lat.style_dim);
        for (let i = 0; i < lat.n_styles; i++) st.set(w, i * lat.style_dim);
        wCache.set(s, { zg: zg, styles: st });
      }
      return wCache.get(s);
    }

    function tsRanges(s, n) {  // global [start, stop) of every GT conv output, as geometry.py
      let a = s, b = s + BigInt(n);
      const out = [];
      for (let k = 0; k < geo.n_up; k++) {
        a = 2n * a + 2n; b = 2n * b - 1n; out.push([a, b]);
        a = a + 1n; b = b - 1n; out.push([a, b]);
      }
      return out;
    }
    const range = (a, b) => { const r = []; for (let v = a; v < b; v++) r.push(v); return r; };
    const floorDiv = (a, d) => (a >= 0n ? a / d : -((-a + d - 1n) / d));

    // one tile at a time: the sessions are not re-entrant
    let queue = Promise.resolve();
    const timings = [];

    async function renderFloat(s, tx, ty) {
      const t0 = performance.now();
      const X0 = BigInt(tx) * BigInt(T), Y0 = BigInt(ty) * BigInt(T);
      const sr = floorDiv(Y0, BigInt(LAT)), sc = floorDiv(X0, BigInt(LAT));
      const oy = Number(Y0 - sr * BigInt(LAT)), ox = Number(X0 - sc * BigInt(LAT));
      const { zg, styles: st } = await styles(s);
      const n2 = cells + 2 * m;
      const zl = C.gaussianField(C.streamKey(BigInt(s), "zl"), lat.zl_dim, range(sr - BigInt(m), sr + BigInt(cells + m)),
                                 range(sc - BigInt(m), sc + BigInt(cells + m)));
      const co = C.canvasCoords(manifest.coordinates, sr - BigInt(m), n2, sc - BigInt(m), n2);
      const zs = (await session.structure.run({
        zg: new ort.Tensor("float32", zg, [1, lat.zg_dim]), zl: new ort.Tensor("float32", zl, [1, lat.zl_dim, n2, n2]),
        coords: new ort.Tensor("float32", co, [1, manifest.coordinates.channels, n2, n2]) })).zs;
      const feeds = { zs: zs, styles: new ort.Tensor("float32", st, [1, lat.n_styles, lat.style_dim]) };
      const ry = tsRanges(sr, cells), rx = tsRanges(sc, cells);
      for (let j = 0; j < 2 * geo.n_up; j++) {
        const rows = range(ry[j][0], ry[j][1]), cols = range(rx[j][0], rx[j][1]);
        const nz = C.gaussianField(C.streamKey(BigInt(s), "noise" + j), 1, rows, cols);
        feeds["noise_" + j] = new ort.Tensor("float32", nz, [1, 1, rows.length, cols.length]);
      }
      const rgb = (await session.texture.run(feeds)).rgb;
      const [, , H, W] = rgb.dims, d = rgb.data;
      const px = new Float32Array(T * T * 3);  // (T, T, 3) raw generator output, about [-1, 1]
      for (let y = 0; y < T; y++) {
        for (let x = 0; x < T; x++) {
          for (let c = 0; c < 3; c++) px[(y * T + x) * 3 + c] = d[(c * H + y + oy) * W + x + ox];
        }
      }
      timings.push(performance.now() - t0);
      return px;
    }

    async function renderTile(s, z, tx, ty) {
      // zoom-out level k = -z: the mean of 2^k x 2^k native tiles, as serve's downsample
      const k = Math.max(0, -z), f = 1 << k;
      let acc = null;
      for (let j = 0; j < f; j++) {
        for (let i = 0; i < f; i++) {
          const px = await renderFloat(s, tx * f + i, ty * f + j);
          if (f === 1) { acc = px; continue; }
          if (acc === null) acc = new Float32Array(T * T * 3);
          for (let y = 0; y < T; y++) {
            const Y = ((j * T + y) / f) | 0;
            for (let x = 0; x < T; x++) {
              const X = ((i * T + x) / f) | 0, o = (Y * T + X) * 3, q = (y * T + x) * 3;
              acc[o] += px[q]; acc[o + 1] += px[q + 1]; acc[o + 2] += px[q + 2];
            }
          }
        }
      }
      const img = new ImageData(T, T), n = f * f;
      for (let p = 0; p < T * T; p++) {
        for (let c = 0; c < 3; c++) {  // as io.images.to_uint8: clamp(rint((v + 1) * 127.5)) in float32
          const v = Math.fround(Math.fround(Math.fround(acc[p * 3 + c] / n) + 1) * 127.5);
          img.data[p * 4 + c] = Math.min(255, Math.max(0, rint(v)));
        }
        img.data[p * 4 + 3] = 255;
      }
      return img;
    }

    const minZoom = -map_.max_zoom;
    const bounds = L.latLngBounds([[-map_.band, -map_.x_limit], [map_.band, map_.x_limit]]);
    const lmap = L.map("map", { crs: L.CRS.Simple, minZoom: minZoom, maxZoom: 2, zoomSnap: 1, maxBounds: bounds,
                                maxBoundsViscosity: 1.0 });
    lmap.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    const busy = document.getElementById("busy");
    let pending = 0;
    function showBusy() { busy.hidden = pending <= 0; busy.textContent = "rendering " + pending + " tile(s)\u2026"; }

    const Layer = L.GridLayer.extend({
      createTile: function (c, done) {
        const tile = document.createElement("canvas");
        tile.width = tile.height = T;
        const s = seed;
        pending += 1; showBusy();
        queue = queue.then(() => renderTile(s, c.z, c.x, c.y)).then((img) => {
          tile.getContext("2d").putImageData(img, 0, 0);
          tile.dataset.tile = s + "/" + (-c.z) + "/" + c.x + "/" + c.y;
          done(null, tile);
        }, (err) => done(err, tile)).finally(() => { pending -= 1; showBusy(); });
        return tile;
      },
    });
    const layer = new Layer({ tileSize: T, minZoom: minZoom, maxZoom: 2, minNativeZoom: minZoom, maxNativeZoom: 0,
                              bounds: bounds, noWrap: true, keepBuffer: 1,
                              attribution: "InfinityGAN (" + manifest.model + "), in this browser (" + backend + ")" }).addTo(lmap);
    const x0 = Number.isSafeInteger(h.x) ? h.x : 0, y0 = Number.isSafeInteger(h.y) ? h.y : 0;
    const z0 = Number.isSafeInteger(h.z) ? Math.min(2, Math.max(minZoom, -h.z)) : 0;
    lmap.setView([-y0, x0], z0, { animate: false });

    const seedInput = document.getElementById("seed"), where = document.getElementById("where");
    seedInput.value = seed;
    function writeHash() {
      const c = lmap.getCenter();
      const hash = "#seed=" + seed + "&x=" + Math.round(c.lng) + "&y=" + Math.round(-c.lat) + "&z=" + (-lmap.getZoom());
      if (location.hash !== hash) history.replaceState(null, "", hash);
      where.textContent = "x " + Math.round(c.lng) + "  y " + Math.round(-c.lat);
    }
    function setSeed(s) {
      if (!Number.isSafeInteger(s) || s < 0 || s === seed) return;
      seed = s; seedInput.value = s; layer.redraw(); writeHash();
    }
    lmap.on("moveend zoomend", writeHash);
    window.addEventListener("hashchange", function () {  // a shared link moves the map where it points
      const h2 = parseHash();
      if (Number.isSafeInteger(h2.seed)) setSeed(h2.seed);
      if (Number.isSafeInteger(h2.x) && Number.isSafeInteger(h2.y)) {
        const z = Number.isSafeInteger(h2.z) ? Math.min(2, Math.max(minZoom, -h2.z)) : lmap.getZoom();
        lmap.setView([-h2.y, h2.x], z);
      }
    });
    document.getElementById("panel").addEventListener("submit", (e) => { e.preventDefault(); setSeed(Number(seedInput.value)); });
    document.getElementById("random").addEventListener("click", () => setSeed(Math.floor(Math.random() * 1e9)));
    writeHash();
    window.explorer = { map: lmap, layer: layer, manifest: manifest, timings: timings, renderTile: renderTile,
                        backend: backend };
  }

  start().catch((e) => { document.getElementById("where").textContent = "failed: " + e; console.error(e); });
})();
