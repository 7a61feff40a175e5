/**
 * "Did you mean?" for option names: the known name closest to a misspelt one, if any is close
 * enough to be a likely typo.
 */

/**
 * The entry of `known` that `key` most likely misspells: same name in another case, a prefix
 * either way (`timeout` → `timeoutMs`, `requestTimeout` → `requestTimeoutMs`), or within a
 * small edit distance (`conections` → `connections`, `datacentre` → `datacenter`). Ties go to
 * the earlier entry.
 */
export function nearMatch(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase()
  let best: string | undefined
  let bestScore = Number.POSITIVE_INFINITY
  for (const candidate of known) {
    const c = candidate.toLowerCase()
    const score =
      c === k ? 0 : k.length >= 3 && (c.startsWith(k) || k.startsWith(c)) ? 1 : editDistance(k, c)
    // One edit in three characters is a typo; more is a different word.
    const limit = Math.max(1, Math.floor(Math.max(k.length, c.length) / 3))
    if (score <= limit && score < bestScore) {
      best = candidate
      bestScore = score
    }
  }
  return best
}

/**
 * Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent
 * transpositions each cost 1 (`datacentre` is one edit from `datacenter`).
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1
  const cols = b.length + 1
  const d: number[] = new Array<number>(rows * cols).fill(0)
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0
  for (let i = 0; i < rows; i++) d[i * cols] = i
  for (let j = 0; j < cols; j++) d[j] = j
  for (let i = 1; i < rows; i++)
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, at(i - 2, j - 2) + 1)
      d[i * cols + j] = v
    }
  return at(a.length, b.length)
}
