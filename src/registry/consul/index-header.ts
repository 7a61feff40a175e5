/**
 * Reading `X-Consul-Index`. Consul's indexes are Raft indexes, uint64 in Go: parsed as BigInt so
 * that values above 2^53 stay exact, and bounded so that a corrupt header (a proxy, a buggy
 * agent) is never echoed back as `?index=`.
 */

/** Largest value of a Go uint64. */
export const MAX_CONSUL_INDEX = 2n ** 64n - 1n

/** What an `X-Consul-Index` header says. */
export type ConsulIndex =
  | { readonly kind: 'ok'; readonly index: bigint }
  /** 0: a bug the blocking-query guide names ("Sanity check index is greater than zero"). */
  | { readonly kind: 'zero' }
  /** Absent, not a decimal number, or above 2^64−1. */
  | { readonly kind: 'invalid'; readonly reason: string }

export function parseConsulIndex(raw: string | undefined): ConsulIndex {
  if (raw === undefined) return { kind: 'invalid', reason: 'is missing' }
  const text = raw.trim()
  // 20 digits hold 2^64−1; anything longer is out of range without building a BigInt of it.
  if (!/^\d+$/.test(text)) return { kind: 'invalid', reason: 'is not a decimal number' }
  if (text.length > 20) return { kind: 'invalid', reason: 'is above 2^64−1' }
  const index = BigInt(text)
  if (index > MAX_CONSUL_INDEX) return { kind: 'invalid', reason: 'is above 2^64−1' }
  if (index === 0n) return { kind: 'zero' }
  return { kind: 'ok', index }
}
