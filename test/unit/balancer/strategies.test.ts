import { describe, expect, it } from 'vitest'
import { leastLoaded } from '../../../src/balancer/least-loaded.js'
import { random } from '../../../src/balancer/random.js'
import { roundRobin, RoundRobinPicker } from '../../../src/balancer/round-robin.js'
import { ErrorCode, InvalidOptionError } from '../../../src/errors.js'
import { parseWayfindOptions } from '../../../src/options.js'
import { context, countPicks, instances, seeded } from './helpers.js'

describe('round-robin', () => {
  it('is exactly even over whole cycles', () => {
    const list = instances(7)
    const picker = roundRobin().createPicker(list, context())
    const counts = countPicks(picker, 7 * 100)
    expect([...counts.values()]).toEqual(Array(7).fill(100))
  })

  it('starts at an offset taken from ctx.random', () => {
    const list = instances(10)
    const first = (r: number): string => {
      const p = roundRobin().createPicker(list, context({ random: () => r }))
      const res = p.pick()
      return res.kind === 'pick' ? res.instance.id : 'none'
    }
    expect(first(0)).toBe('i0')
    expect(first(0.55)).toBe('i5')
    expect(first(0.99)).toBe('i9')
  })

  it('keeps its position across a picker swap', () => {
    const list = instances(4)
    const ctx = context({ random: () => 0 })
    const p1 = roundRobin().createPicker(list.slice(0, 3), ctx)
    const ids = (p: typeof p1, n: number) =>
      Array.from({ length: n }, () => {
        const r = p.pick()
        return r.kind === 'pick' ? r.instance.id : '?'
      })
    expect(ids(p1, 2)).toEqual(['i0', 'i1'])
    // i3 joins: the next pick continues at i2, not back at a random start.
    const p2 = roundRobin().createPicker(list, { ...ctx, random: () => 0.99, previous: p1 })
    expect(ids(p2, 4)).toEqual(['i2', 'i3', 'i0', 'i1'])
    // i2 (the next one) leaves: continue at the same position, which now holds i3.
    const p3 = roundRobin().createPicker([list[0]!, list[1]!, list[3]!], { ...ctx, previous: p2 })
    expect(p3).toBeInstanceOf(RoundRobinPicker)
    expect(ids(p3, 3)).toEqual(['i3', 'i0', 'i1'])
  })

  it('skips excluded instances and fails when every one is excluded', () => {
    const list = instances(3)
    const p = roundRobin().createPicker(list, context({ random: () => 0 }))
    const counts = countPicks(p, 30, new Set([list[1]!.key]))
    expect(counts.get('i1')).toBeUndefined()
    expect(counts.get('i0')).toBe(15)
    const r = p.pick({ exclude: new Set(list.map((i) => i.key)) })
    expect(r.kind).toBe('fail')
    if (r.kind === 'fail') expect(r.error.code).toBe(ErrorCode.NO_INSTANCES)
  })

  it('honours weights exactly (EDF) when they differ', () => {
    const list = instances(3, [1, 2, 5])
    const p = roundRobin().createPicker(list, context())
    const counts = countPicks(p, 8 * 50)
    expect(counts.get('i0')).toBe(50)
    expect(counts.get('i1')).toBe(100)
    expect(counts.get('i2')).toBe(250)
    // Interleaved, not bursty: no instance of weight 5 runs more than 3 in a row.
    let run = 0
    let max = 0
    for (let k = 0; k < 80; k++) {
      const r = p.pick()
      run = r.kind === 'pick' && r.instance.id === 'i2' ? run + 1 : 0
      max = Math.max(max, run)
    }
    expect(max).toBeLessThanOrEqual(3)
    const ex = countPicks(p, 30, new Set([list[2]!.key]))
    expect(ex.get('i2')).toBeUndefined()
    expect(ex.get('i1')).toBe(20)
  })
})

describe('random', () => {
  it('is uniform with a seeded RNG', () => {
    const p = random().createPicker(instances(4), context({ seed: 7 }))
    const counts = countPicks(p, 40_000)
    for (const c of counts.values()) expect(Math.abs(c - 10_000)).toBeLessThan(400)
  })

  it('honours weights (alias method)', () => {
    const p = random().createPicker(instances(3, [1, 3, 6]), context({ seed: 9 }))
    const counts = countPicks(p, 100_000)
    expect(counts.get('i0')! / 100_000).toBeCloseTo(0.1, 1)
    expect(counts.get('i1')! / 100_000).toBeCloseTo(0.3, 1)
    expect(counts.get('i2')! / 100_000).toBeCloseTo(0.6, 1)
  })

  it('never returns an excluded instance', () => {
    const list = instances(5)
    const p = random().createPicker(list, context({ seed: 3 }))
    const counts = countPicks(p, 5_000, new Set([list[0]!.key, list[3]!.key]))
    expect([...counts.keys()].sort()).toEqual(['i1', 'i2', 'i4'])
  })
})

describe('least-loaded (P2C)', () => {
  it('always draws two distinct instances and prefers the one with fewer in-flight', () => {
    const list = instances(2)
    const ctx = context({ seed: 1 })
    const p = leastLoaded({ latency: 'none' }).createPicker(list, ctx)
    ctx.load.start(list[0]!.key)
    // With two instances both are always in the pair, so the idle one must win every time.
    const counts = countPicks(p, 1_000)
    expect(counts.get('i1')).toBe(1_000)
  })

  it('spreads load: held requests stay balanced within one', () => {
    const list = instances(8)
    const ctx = context({ seed: 5 })
    const p = leastLoaded({ latency: 'none' }).createPicker(list, ctx)
    for (let k = 0; k < 800; k++) {
      const r = p.pick()
      if (r.kind !== 'pick') throw new Error('no pick')
      ctx.load.start(r.instance.key)
    }
    const inflight = list.map((i) => ctx.load.record(i.key).inflight)
    expect(inflight.reduce((a, b) => a + b)).toBe(800)
    // P2C keeps the max-min gap small (plain random would be ~±30 here).
    expect(Math.max(...inflight) - Math.min(...inflight)).toBeLessThanOrEqual(6)
  })

  it('prefers the faster instance with peak-EWMA at equal in-flight', () => {
    const list = instances(2)
    const ctx = context({ seed: 2 })
    const p = leastLoaded().createPicker(list, ctx)
    ctx.load.observe(list[0]!.key, 200)
    ctx.load.observe(list[1]!.key, 10)
    const counts = countPicks(p, 500)
    expect(counts.get('i1')).toBe(500)
    // Latency outweighs a little extra load: i1 with 5 in flight (10 ms × 6 = 60) still beats i0 idle (200).
    for (let k = 0; k < 5; k++) ctx.load.start(list[1]!.key)
    expect(countPicks(p, 100).get('i1')).toBe(100)
  })

  it('lets an old slow sample decay: an instance not sampled for a minute is tried again', () => {
    const list = instances(2)
    const ctx = context({ seed: 6 })
    const p = leastLoaded().createPicker(list, ctx)
    ctx.load.observe(list[0]!.key, 200)
    ctx.clock.advance(60_000)
    ctx.load.observe(list[1]!.key, 10)
    // 200 ms decayed over 6 time constants is ~0.5 ms, below the fresh 10 ms.
    expect(countPicks(p, 100).get('i0')).toBe(100)
  })

  it('honours weights: held in-flight settles in proportion to weight', () => {
    const list = instances(2, [1, 3])
    const ctx = context({ seed: 11 })
    const p = leastLoaded({ latency: 'none' }).createPicker(list, ctx)
    for (let k = 0; k < 400; k++) {
      const r = p.pick()
      if (r.kind !== 'pick') throw new Error('no pick')
      ctx.load.start(r.instance.key)
    }
    expect(ctx.load.record(list[0]!.key).inflight).toBe(100)
    expect(ctx.load.record(list[1]!.key).inflight).toBe(300)
  })

  it('never returns excluded instances, and falls back to the only allowed one', () => {
    const list = instances(4)
    const p = leastLoaded().createPicker(list, context({ seed: 4 }))
    const counts = countPicks(p, 2_000, new Set([list[0]!.key, list[1]!.key, list[2]!.key]))
    expect([...counts.keys()]).toEqual(['i3'])
    expect(p.pick({ exclude: new Set(list.map((i) => i.key)) }).kind).toBe('fail')
  })

  it('is the same result object per instance: picking allocates nothing new', () => {
    const list = instances(3)
    const p = leastLoaded().createPicker(list, context({ seed: 8 }))
    const seen = new Set<object>()
    for (let k = 0; k < 300; k++) seen.add(p.pick())
    expect(seen.size).toBe(3)
  })

  it('lets equal instances take turns: the first candidate rotates, ties keep it', () => {
    const list = instances(4)
    // A constant random() draws the same second candidate every time: only the rotation varies.
    const p = leastLoaded().createPicker(list, context({ random: () => 0.5 }))
    const order = Array.from({ length: 8 }, () => {
      const r = p.pick()
      if (r.kind !== 'pick') throw new Error('no pick')
      return r.instance.id
    })
    // Start at floor(0.5 × 4) = i2; the second draw (i0 or i1) only ties, so the rotation wins.
    expect(order).toEqual(['i2', 'i3', 'i0', 'i1', 'i2', 'i3', 'i0', 'i1'])
  })

  it('still avoids a loaded instance when the rotation offers it', () => {
    const list = instances(4)
    const ctx = context({ seed: 13 })
    const p = leastLoaded({ latency: 'none' }).createPicker(list, ctx)
    for (let k = 0; k < 3; k++) ctx.load.start(list[2]!.key)
    // i2 is the first candidate every 4th pick, and loses to the idle second candidate each time.
    expect(countPicks(p, 400).get('i2')).toBeUndefined()
  })

  it('prefers a candidate below capacity over a full one, whatever their latency', () => {
    const list = instances(2)
    const ctx = context({ seed: 3 })
    const p = leastLoaded().createPicker(list, ctx)
    ctx.load.observe(list[0]!.key, 1)
    ctx.load.observe(list[1]!.key, 200)
    for (let k = 0; k < 4; k++) ctx.load.start(list[0]!.key)
    // Without a capacity, i0 is cheaper (1 ms × 5 < 200 ms × 1).
    expect(countPicks(p, 50).get('i0')).toBe(50)
    // With 4 connections per instance, i0 is full: a request there would wait for a connection.
    const full = { capacity: 4 }
    for (let k = 0; k < 50; k++) expect(p.pick(full)).toMatchObject({ instance: { id: 'i1' } })
    // Both full: cost decides again.
    for (let k = 0; k < 4; k++) ctx.load.start(list[1]!.key)
    expect(p.pick(full)).toMatchObject({ instance: { id: 'i0' } })
    // Capacity 0 means unbounded.
    expect(p.pick({ capacity: 0 })).toMatchObject({ instance: { id: 'i0' } })
  })

  it('rejects an unknown latency mode', () => {
    expect(() => leastLoaded({ latency: 'fast' as never })).toThrow(InvalidOptionError)
  })
})

/** The strategy the client would use for this option. */
function parseStrategy(strategy: unknown) {
  return parseWayfindOptions({ strategy: strategy as never }).strategy
}

describe('the strategy option', () => {
  it('maps names and passes objects through', () => {
    expect(parseStrategy('round-robin').name).toBe('round-robin')
    expect(parseStrategy('random').name).toBe('random')
    expect(parseStrategy('least-loaded').name).toBe('least-loaded')
    expect(parseStrategy(undefined).name).toBe('least-loaded')
    const rr = roundRobin()
    const custom = {
      name: 'mine',
      createPicker: (...a: Parameters<typeof rr.createPicker>) => rr.createPicker(...a),
    }
    expect(parseStrategy(custom)).toBe(custom)
  })

  it('rejects anything else with InvalidOptionError naming the option', () => {
    try {
      parseStrategy('fastest')
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidOptionError)
      expect((err as InvalidOptionError).option).toBe('strategy')
      expect((err as Error).message).toContain('"fastest"')
    }
  })

  it('uses the seeded RNG deterministically', () => {
    const a = countPicks(random().createPicker(instances(5), context({ random: seeded(1) })), 100)
    const b = countPicks(random().createPicker(instances(5), context({ random: seeded(1) })), 100)
    expect([...a.entries()]).toEqual([...b.entries()])
  })
})
