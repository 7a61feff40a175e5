/**
 * Watches many services through one provider and waits until every service's latest snapshot
 * satisfies a predicate: the integration tests' view of "the whole registry caught up".
 */
import type { RegistryProvider, ServiceSnapshot } from '../../src/registry/provider.js'
import { withDeadline } from './wait.js'

/** Waits until each watched service's latest snapshot satisfies `predicate`; a timeout says how many are behind. */
export type WaitAll = (
  predicate: (s: ServiceSnapshot) => boolean,
  timeoutMs: number,
  what: string,
) => Promise<void>

export function watchAll(
  reg: Pick<RegistryProvider, 'watch'>,
  names: readonly string[],
  signal: AbortSignal,
): WaitAll {
  const latest = new Map<string, ServiceSnapshot>()
  let poke = (): void => {}
  for (const name of names)
    reg.watch(
      name,
      {
        onSnapshot: (s) => {
          latest.set(name, s)
          poke()
        },
        onError: () => {},
      },
      { signal },
    )
  return async (predicate, timeoutMs, what) => {
    const behind = (): number =>
      names.filter((n) => {
        const s = latest.get(n)
        return s === undefined || !predicate(s)
      }).length
    try {
      await withDeadline(
        new Promise<void>((resolve) => {
          poke = () => {
            if (behind() === 0) resolve()
          }
          poke()
        }),
        timeoutMs,
        what,
      )
    } catch (err) {
      throw new Error(`${(err as Error).message}: ${behind()} of ${names.length} services behind`)
    }
  }
}
