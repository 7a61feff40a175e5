/**
 * The chaos suite's own accounting must catch what it claims to catch: a suite whose counters
 * cannot move proves nothing.
 */
import { expect, it } from 'vitest'
import { createEvents, type ChangeEvent } from '../../src/events.js'
import { createInstance, type Instance } from '../../src/instance.js'
import { ChangeLedger } from './ledger.js'
import { mulberry32 } from './prng.js'

const inst = (id: string, port = 8000): Instance =>
  createInstance({ id, key: `/s/${id}`, service: 's', host: '127.0.0.1', port })

function change(
  instances: Instance[],
  diff: Partial<Pick<ChangeEvent, 'added' | 'removed' | 'updated'>>,
): ChangeEvent {
  return { service: 's', instances, added: [], removed: [], updated: [], ...diff }
}

it('counts duplicate, no-op and inconsistent events, and reports what was never announced', () => {
  const hub = createEvents()
  const ledger = new ChangeLedger(hub.api)
  const a = inst('a')
  const a2 = inst('a', 9000)
  const b = inst('b')
  hub.emit('change', change([a], { added: [a] }))
  hub.emit('change', change([a], { added: [a] })) // duplicate add
  hub.emit('change', change([a2], { updated: [a2] }))
  hub.emit('change', change([a2], { updated: [a2] })) // duplicate update
  hub.emit('change', change([a2], {})) // no-op
  hub.emit('change', change([a2, b], { removed: [b] })) // removes an absent key, lists it
  expect(ledger.counts()).toMatchObject({ events: 6, duplicate: 3, noop: 1, inconsistent: 1 })
  const truth = [
    { key: '/s/a', host: '127.0.0.1', port: 9000, tags: [], meta: {}, weight: 1 },
    { key: '/s/c', host: '127.0.0.1', port: 8000, tags: [], meta: {}, weight: 1 },
  ]
  // b was announced (through the inconsistent list) but is gone; c was never announced.
  expect(ledger.differences('s', truth)).toHaveLength(2)
  ledger.close()
})

it('the PRNG replays from its seed and spreads nearby seeds', () => {
  const take = (seed: number): number[] => {
    const r = mulberry32(seed)
    return Array.from({ length: 8 }, () => r.int(1_000_000))
  }
  expect(take(42)).toEqual(take(42))
  expect(take(1)).not.toEqual(take(2))
  const r = mulberry32(7)
  const counts = [0, 0, 0, 0]
  for (let i = 0; i < 4_000; i++) counts[r.int(4)]! += 1
  for (const c of counts) expect(c).toBeGreaterThan(850)
})
