/**
 * Vose's alias method: O(n) build, O(1) weighted sampling with one random number. Used by the
 * weighted random strategy (and nowhere when weights are equal).
 */
export class AliasTable {
  readonly #prob: Float64Array
  readonly #alias: Int32Array

  constructor(weights: readonly number[]) {
    const n = weights.length
    this.#prob = new Float64Array(n)
    this.#alias = new Int32Array(n)
    let total = 0
    for (const w of weights) total += w
    const scaled = weights.map((w) => (w * n) / total)
    const small: number[] = []
    const large: number[] = []
    scaled.forEach((p, i) => (p < 1 ? small : large).push(i))
    while (small.length > 0 && large.length > 0) {
      const s = small.pop() as number
      const l = large.pop() as number
      this.#prob[s] = scaled[s] as number
      this.#alias[s] = l
      const rest = (scaled[l] as number) + (scaled[s] as number) - 1
      scaled[l] = rest
      if (rest < 1) small.push(l)
      else large.push(l)
    }
    // Leftovers are 1 up to rounding error.
    for (const i of large) this.#prob[i] = 1
    for (const i of small) this.#prob[i] = 1
  }

  /** An index drawn with probability proportional to its weight; `r` uniform in [0, 1). */
  sample(r: number): number {
    const n = this.#prob.length
    const x = r * n
    const i = x | 0
    return x - i < (this.#prob[i] ?? 1) ? i : (this.#alias[i] ?? i)
  }
}
