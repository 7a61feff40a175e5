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
   * The index went back to `to` somewhere on this agent (reset `epoch`): a watch holding a
   * higher index read before that epoch (or polling with one) must re-read from 0 instead of
   * sending it again.
   */
  resetAbove(to: bigint, epoch: number): void
}

/**
 * The epoch counts regressions. Several watches usually see the same restore (every long poll
 * parked at that moment is released with a lower index), and each reports it: a report from a
 * read that started before the current epoch may be the restore already announced, so it keeps
 * the epoch, and watches that re-based since (their index read in this epoch) ignore it. Without
 * that, N watches would reset each other N times. A report from a read that started in the
 * current epoch is a new regression: a new epoch, and every watch with a higher index resets.
 */
export class IndexResets {
  readonly #targets = new Set<IndexResetTarget>()
  #epoch = 0

  /** The current reset epoch: a watch notes it when a read starts. */
  get epoch(): number {
    return this.#epoch
  }

  /** Adds a watch; the returned function removes it (call it when the watch stops). */
  join(target: IndexResetTarget): () => void {
    this.#targets.add(target)
    return () => {
      this.#targets.delete(target)
    }
  }

  /**
   * Called by the watch that saw its index go back to `to`, with the epoch when that read
   * started. Rare, so walking every watch is fine even with thousands of them.
   */
  regressed(to: bigint, from: IndexResetTarget, readEpoch: number): void {
    if (readEpoch >= this.#epoch) this.#epoch++
    for (const target of [...this.#targets]) if (target !== from) target.resetAbove(to, this.#epoch)
  }
}
