/**
 * SHA-1 of `bytes`, as 20 bytes. Written out, synchronous and free of any
 * platform API, so that a digest is computed in the same step as what it
 * digests; it names scripts and cluster generations, nothing secret.
 */
export function sha1(bytes: readonly number[]): number[] {
  const padded = [...bytes, 0x80];
  while (padded.length % 64 !== 56) padded.push(0);
  const bits = bytes.length * 8;
  for (const word of [Math.floor(bits / 2 ** 32), bits >>> 0]) {
    padded.push(word >>> 24, (word >>> 16) & 0xff, (word >>> 8) & 0xff);
    padded.push(word & 0xff);
  }
  const h = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];
  const w: number[] = new Array<number>(80).fill(0);
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) {
      const at = block + 4 * i;
      w[i] =
        (padded[at]! << 24) |
        (padded[at + 1]! << 16) |
        (padded[at + 2]! << 8) |
        padded[at + 3]!;
    }
    for (let i = 16; i < 80; i++) {
      w[i] = rotate(w[i - 3]! ^ w[i - 8]! ^ w[i - 14]! ^ w[i - 16]!, 1);
    }
    let [a, b, c, d, e] = h as [number, number, number, number, number];
    for (let i = 0; i < 80; i++) {
      let mix: number;
      let constant: number;
      if (i < 20) {
        mix = (b & c) | (~b & d);
        constant = 0x5a827999;
      } else if (i < 40) {
        mix = b ^ c ^ d;
        constant = 0x6ed9eba1;
      } else if (i < 60) {
        mix = (b & c) | (b & d) | (c & d);
        constant = 0x8f1bbcdc;
      } else {
        mix = b ^ c ^ d;
        constant = 0xca62c1d6;
      }
      const next = (rotate(a, 5) + mix + e + constant + w[i]!) | 0;
      e = d;
      d = c;
      c = rotate(b, 30);
      b = a;
      a = next;
    }
    h[0] = (h[0]! + a) | 0;
    h[1] = (h[1]! + b) | 0;
    h[2] = (h[2]! + c) | 0;
    h[3] = (h[3]! + d) | 0;
    h[4] = (h[4]! + e) | 0;
  }
  return h.flatMap((word) => [
    word >>> 24,
    (word >>> 16) & 0xff,
    (word >>> 8) & 0xff,
    word & 0xff,
  ]);
}

function rotate(word: number, by: number): number {
  return (word << by) | (word >>> (32 - by));
}
