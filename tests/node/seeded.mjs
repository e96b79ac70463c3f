// Helpers shared by the Node test scripts: a seeded random generator, so that a failing
// random run can be replayed, and the UTF-16 surrogate-pair test.

/** mulberry32: `random(seed)()` is a float in [0, 1), the same sequence for the same seed. */
export const random = (seed) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `below(seed)(n)`: an integer in [0, n), from `random(seed)`. */
export const below = (seed) => {
  const next = random(seed)
  return (n) => Math.floor(next() * n)
}

/** True when UTF-16 index i falls between the two halves of a surrogate pair. */
export const splitsPair = (s, i) => {
  const before = s.charCodeAt(i - 1)
  return i > 0 && i < s.length && before >= 0xd800 && before <= 0xdbff
}
