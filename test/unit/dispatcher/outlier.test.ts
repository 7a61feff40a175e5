import { describe, expect, it } from 'vitest'
import { OutlierDetector } from '../../../src/dispatcher/outlier.js'
import { parseDispatcherOptions, type OutlierOptions } from '../../../src/dispatcher/options.js'
import { createEvents, type EjectionEvent } from '../../../src/events.js'
import { FakeClock, instances } from '../balancer/helpers.js'

function setup(options: OutlierOptions = {}) {
  const clock = new FakeClock()
  const hub = createEvents()
  const events: [string, EjectionEvent][] = []
  hub.api.on('eject', (e) => events.push(['eject', e]))
  hub.api.on('uneject', (e) => events.push(['uneject', e]))
  const returned: string[] = []
  const resolved = parseDispatcherOptions({ outlier: options }).outlier!
  const det = new OutlierDetector(resolved, clock, hub, (_s, key) => returned.push(key))
  return { clock, det, events, returned }
}

describe('OutlierDetector (Envoy consecutive failures)', () => {
  it('ejects at 5 consecutive failures for 30 s, then returns with an event', () => {
    const { clock, det, events, returned } = setup()
    const list = instances(10)
    const a = list[0]!
    for (let f = 1; f <= 4; f++) expect(det.reportFailure('svc', a, f, 10)).toBe(false)
    expect(det.excludeFor('svc', 10)).toBeUndefined()
    expect(det.reportFailure('svc', a, 5, 10)).toBe(true)
    expect(events).toEqual([['eject', { service: 'svc', instance: a, durationMs: 30_000 }]])
    expect([...(det.excludeFor('svc', 10) ?? [])]).toEqual([a.key])
    expect(det.info('svc', a.key)).toEqual({ ejected: true, ejectCount: 1, ejectedForMs: 30_000 })
    clock.advance(29_999)
    expect(det.excludeFor('svc', 10)).toBeDefined()
    clock.advance(1)
    expect(det.excludeFor('svc', 10)).toBeUndefined()
    expect(events.at(-1)).toEqual(['uneject', { service: 'svc', instance: a }])
    expect(returned).toEqual([a.key])
  })

  it('multiplies the ejection time by times ejected, capped at 300 s, and decays while healthy', () => {
    const { clock, det, events } = setup()
    const a = instances(10)[0]!
    const durations: number[] = []
    for (let n = 0; n < 12; n++) {
      det.reportFailure('svc', a, 5, 10)
      durations.push(events.at(-1)![1].durationMs!)
      clock.advance(durations.at(-1)!)
    }
    expect(durations.slice(0, 4)).toEqual([30_000, 60_000, 90_000, 120_000])
    expect(Math.max(...durations)).toBe(300_000)
    // Healthy for a while: each 10 s interval forgets one ejection.
    const before = det.info('svc', a.key).ejectCount
    clock.advance(10_000 * 3)
    expect(det.info('svc', a.key).ejectCount).toBeLessThan(before)
    clock.advance(10_000 * 20)
    expect(det.info('svc', a.key).ejectCount).toBe(0)
    det.reportFailure('svc', a, 5, 10)
    expect(events.at(-1)![1].durationMs).toBe(30_000)
  })

  it('ejects at most 10 % of instances, but always at least one', () => {
    const { det } = setup()
    const list = instances(30)
    let ejected = 0
    for (const i of list) if (det.reportFailure('svc', i, 5, 30)) ejected++
    expect(ejected).toBe(3)
    const { det: det2 } = setup()
    const few = instances(3)
    expect(few.filter((i) => det2.reportFailure('svc', i, 5, 3)).length).toBe(1)
  })

  it('ignores ejections in panic mode (healthy share below 50 %)', () => {
    const { det } = setup({ maxEjectionPercent: 100 })
    const list = instances(4)
    det.reportFailure('svc', list[0]!, 5, 4)
    det.reportFailure('svc', list[1]!, 5, 4)
    // 2 of 4 healthy = 50 %: not below the threshold, ejections honoured.
    expect(det.excludeFor('svc', 4)?.size).toBe(2)
    det.reportFailure('svc', list[2]!, 5, 4)
    // 1 of 4 healthy = 25 %: panic, balance over all.
    expect(det.excludeFor('svc', 4)).toBeUndefined()
    expect(det.isPanic(3, 4)).toBe(true)
    // A single-instance service is never left with nothing.
    const { det: one } = setup()
    const solo = instances(1)[0]!
    expect(one.reportFailure('svc', solo, 5, 1)).toBe(true)
    expect(one.excludeFor('svc', 1)).toBeUndefined()
  })

  it('forgets removed instances and fires nothing after close', () => {
    const { clock, det, events } = setup()
    const list = instances(10)
    det.reportFailure('svc', list[0]!, 5, 10)
    det.remove('svc', list[0]!.key)
    expect(det.excludeFor('svc', 10)).toBeUndefined()
    det.reportFailure('svc', list[1]!, 5, 10)
    det.close()
    const count = events.length
    clock.advance(1_000_000)
    expect(events.length).toBe(count)
    expect(clock.pending).toBe(0)
    expect(det.reportFailure('svc', list[2]!, 5, 10)).toBe(false)
  })
})
