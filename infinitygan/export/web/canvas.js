// The infinite canvas of InfinityGAN in JavaScript: every random input of an image as a pure
// function of (seed, position), exactly as infinitygan/latents.py and coords.py define it, so
// that a page can compute the inputs of any tile itself and run the exported graphs on them.
//
//   streamKey(seed, "zl")                         -> 32-bit key (BLAKE2b-64 of "SEED/STREAM")
//   gaussianField(key, channels, rows, cols)      -> Float32Array (C * H * W), N(0, 1)
//   canvasCoords(coords, row0, rows, col0, cols)  -> Float32Array (C * rows * cols)
//
// rows / cols are arrays of BigInt positions (any 64-bit value; far tiles need more than 2^53).
// The hash works on 32-bit words (Math.imul), Box-Muller on 24-bit uniforms in float32
// (Math.fround after every operation, as torch computes it in float32).
(function (root) {
  "use strict";

  // ---- BLAKE2b with an 8-byte digest (RFC 7693), for stream keys --------------------------
  const M64 = (1n << 64n) - 1n;
  const IV = [0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
              0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n];
  const SIGMA = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4], [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13], [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11], [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5], [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]];
  const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & M64;

  function blake2b8(bytes) {
    const h = IV.slice();
    h[0] ^= 0x01010000n ^ 8n;  // digest 8 bytes, no key
    const blocks = Math.max(1, Math.ceil(bytes.length / 128));
    for (let b = 0; b < blocks; b++) {
      const m = new Array(16).fill(0n);
      for (let i = 0; i < 128; i++) {
        const k = b * 128 + i;
        if (k < bytes.length) m[i >> 3] |= BigInt(bytes[k]) << BigInt(8 * (i & 7));
      }
      const last = b === blocks - 1;
      const t = BigInt(Math.min(bytes.length, (b + 1) * 128));
      const v = h.concat(IV);
      v[12] ^= t;
      if (last) v[14] ^= M64;
      const G = (a, bb, c, d, x, y) => {
        v[a] = (v[a] + v[bb] + x) & M64; v[d] = rotr(v[d] ^ v[a], 32n);
        v[c] = (v[c] + v[d]) & M64; v[bb] = rotr(v[bb] ^ v[c], 24n);
        v[a] = (v[a] + v[bb] + y) & M64; v[d] = rotr(v[d] ^ v[a], 16n);
        v[c] = (v[c] + v[d]) & M64; v[bb] = rotr(v[bb] ^ v[c], 63n);
      };
      for (let r = 0; r < 12; r++) {
        const s = SIGMA[r % 10];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]); G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]); G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]); G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]); G(3, 4, 9, 14, m[s[14]], m[s[15]]);
      }
      for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }
    return h[0];  // the first 8 digest bytes, little-endian
  }

  function streamKey(seed, stream) {
    const text = String(BigInt(seed)) + "/" + stream;
    return Number(blake2b8(new TextEncoder().encode(text)) & 0xffffffffn);
  }

  // ---- the 32-bit hash ----------------------------------------------------------------------
  function mix(h) {
    h = (h ^ (h >>> 16)) >>> 0;
    h = Math.imul(h, 0x7feb352d) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
    h = Math.imul(h, 0x21f0aaad) >>> 0;
    return (h ^ (h >>> 16)) >>> 0;
  }
  const absorb = (h, w) => mix((h ^ w) >>> 0);
  function absorb64(h, v) {  // v: BigInt, a signed 64-bit position
    const u = BigInt.asUintN(64, v);
    return absorb(absorb(h, Number(u & 0xffffffffn)), Number(u >> 32n));
  }
  const LANE_A = 0x3c6ef372, LANE_B = 0x6a09e667, COL_A = 0x510e527f, COL_B = 0x1f83d9ab;
  const f32 = Math.fround, TWO_PI = f32(2 * Math.PI), INV24 = f32(1 / 16777216);

  function gaussianField(key, channels, rows, cols) {
    const H = rows.length, W = cols.length, out = new Float32Array(channels * H * W);
    const qa = cols.map((c) => absorb64(COL_A, c)), qb = cols.map((c) => absorb64(COL_B, c));
    const ka = mix((key ^ LANE_A) >>> 0), kb = mix((key ^ LANE_B) >>> 0);
    for (let ch = 0; ch < channels; ch++) {
      const ha = absorb(ka, ch), hb = absorb(kb, ch);
      for (let i = 0; i < H; i++) {
        const la = absorb64(ha, rows[i]), lb = absorb64(hb, rows[i]);
        for (let j = 0; j < W; j++) {
          const h1 = mix((mix((la ^ qa[j]) >>> 0) ^ lb ^ qb[j]) >>> 0);
          const h2 = mix((h1 ^ 0x5bd1e995) >>> 0);
          const u1 = f32(f32(f32(h1 >>> 8) + 0.5) * INV24);
          const u2 = f32(f32(h2 >>> 8) * INV24);
          out[(ch * H + i) * W + j] = f32(f32(Math.sqrt(f32(-2 * f32(Math.log(u1))))) * f32(Math.cos(f32(TWO_PI * u2))));
        }
      }
    }
    return out;
  }

  // ---- coordinates (plain canvas) -----------------------------------------------------------
  const HORIZON_ROW = 2n;
  function angle(index, period) {  // exact integer reduction, then a float64 angle in [-pi, pi)
    const p = BigInt(period);
    const m = Number(((index % p) + p) % p);
    return Math.PI * (2 * m / period - 1);
  }

  function canvasCoords(coords, row0, rows, col0, cols) {
    const r0 = BigInt(row0), c0 = BigInt(col0);
    const C = coords.system === "texture" ? 4 : 3, out = new Float32Array(C * rows * cols);
    if (coords.system === "object") return out;
    for (let i = 0; i < rows; i++) {
      const vHalf = 2n * (r0 + BigInt(i) - HORIZON_ROW);
      for (let j = 0; j < cols; j++) {
        const ha = angle(c0 + BigInt(j), coords.period_cells);
        const vals = coords.system === "scenery"
          ? [Math.tanh(coords.vertical_step / 2 * Number(vHalf)), Math.cos(ha), Math.sin(ha)]
          : (() => {
            const va = angle(vHalf >= 0n ? vHalf / 2n : -((-vHalf + 1n) / 2n), coords.period_cells);
            return [Math.cos(va), Math.sin(va), Math.cos(ha), Math.sin(ha)];
          })();
        for (let c = 0; c < C; c++) out[(c * rows + i) * cols + j] = vals[c];
      }
    }
    return out;
  }

  root.InfinityCanvas = { streamKey, gaussianField, canvasCoords, blake2b8 };
})(typeof window !== "undefined" ? window : globalThis);
