/**
 * Provider-wide index resets. Every watch of one provider talks to the same agent and cluster,
 * so an index that went backwards for one watch (a snapshot restore, servers restarted without
 * their data) went backwards for all of them. Consul releases only the queries parked at the
 * restore (`blockingQuery` in hashicorp/consul agent/consul/rpc.go); a watch that was between
 * two requests then sends its old, higher index and stays parked until the index passes it or
 * the wait ends. So the watch that sees the regression tells the others through this hub, and
 * each one whose index is above the new one resets to a plain read, waking its long poll if one
 * is in flight (docs/design/consul.md#index-rules).
 */

/** What a watch exposes to the hub. */
export interface IndexResetTarget {
  /**
   * The index went back to `to` somewhere on this agent: a watch holding a higher index (or
   * polling with one) must re-read from 0 instead of sending it again.
   */
  resetAbove(to: bigint): void
}

export class IndexResets {
  readonly #targets = new Set<IndexResetTarget>()

  /** Adds a watch; the returned function removes it (call it when the watch stops). */
  join(target: IndexResetTarget): () => void {
    this.#targets.add(target)
    return () => {
      this.#targets.delete(target)
    }
  }

  /**
   * Called by the watch that saw its index go back to `to`. Runs once per regression (rare), so
   * walking every watch is fine even with thousands of them.
   */
  regressed(to: bigint, from: IndexResetTarget): void {
    for (const target of [...this.#targets]) if (target !== from) target.resetAbove(to)
  }
}
