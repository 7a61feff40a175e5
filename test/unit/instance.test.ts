import { isIP } from 'node:net'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  createInstance,
  diffInstances,
  hostSyntaxProblem,
  instanceFault,
  MAX_HOST_LENGTH,
  sameInstance,
  sortedByKey,
  type Instance,
  type InstanceDiff,
} from '../../src/instance.js'

/** The host rule written as its three regular expressions (the full, slow path). */
function acceptedByRule(host: string): boolean {
  if (host.length > MAX_HOST_LENGTH) return false
  // eslint-disable-next-line no-control-regex -- control characters are what this looks for
  if (/[\u0000-\u001f\u007f-\u009f\uFFFD]/u.test(host)) return false
  return isIP(host) !== 0 || /^(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?$/.test(host)
}

describe('hostSyntaxProblem', () => {
  it('accepts exactly what the rule accepts (fast path and full checks agree)', () => {
    const hostChars = fc.constantFrom(...'aZ09-_.:.[]% \u0000\u00e9\uFFFD'.split(''))
    const label = fc.string({
      unit: fc.constantFrom(...'ab9-_'.split('')),
      minLength: 0,
      maxLength: 70,
    })
    const host = fc.oneof(
      fc.string({ unit: hostChars, maxLength: 20 }),
      fc.array(label, { minLength: 1, maxLength: 6 }).map((ls) => ls.join('.')),
      fc.array(label, { minLength: 1, maxLength: 6 }).map((ls) => `${ls.join('.')}.`),
      fc.ipV4(),
      fc.ipV6(),
      fc.integer({ min: 240, max: 260 }).map((n) => 'a'.repeat(n)),
    )
    fc.assert(
      fc.property(host, (h) => {
        expect(hostSyntaxProblem(h) === undefined, JSON.stringify(h)).toBe(acceptedByRule(h))
      }),
      { numRuns: 3000 },
    )
  })

  it('edge cases: trailing dot, empty labels, 63/64-character labels, length 253/254', () => {
    for (const ok of [
      '10.0.0.1',
      'a.b.',
      'svc_1.local',
      'x'.repeat(63),
      '::1',
      `${'a.'.repeat(126)}a`,
    ])
      expect(hostSyntaxProblem(ok), ok).toBeUndefined()
    for (const bad of [
      '',
      '.',
      'a..b',
      '.a',
      'a..',
      'x'.repeat(64),
      `${'a.'.repeat(126)}ab`,
      'a b',
      'a\u0000',
    ])
      expect(hostSyntaxProblem(bad), JSON.stringify(bad)).toBeDefined()
  })
})

describe('createInstance', () => {
  it('copies and freezes tags and meta: later changes to the caller objects do not show', () => {
    const tags = ['a', 'b']
    const meta: Record<string, string> = { zone: 'z1' }
    const i = createInstance({ id: 'x', service: 's', host: 'h', port: 1, tags, meta })
    tags.push('c')
    meta.zone = 'z2'
    expect(i.tags).toEqual(['a', 'b'])
    expect(i.meta).toEqual({ zone: 'z1' })
    expect(Object.isFrozen(i) && Object.isFrozen(i.tags) && Object.isFrozen(i.meta)).toBe(true)
    const bare = createInstance({ id: 'y', service: 's', host: 'h', port: 1 })
    expect(bare.tags).toEqual([])
    expect(Object.isFrozen(bare.tags)).toBe(true)
    expect(bare.meta).toEqual({})
    expect(Object.isFrozen(bare.meta)).toBe(true)
  })

  it('keeps a "__proto__" meta key as data, like JSON.parse and spread do', () => {
    const meta = JSON.parse('{"__proto__":"x","a":"b"}') as Record<string, string>
    const i = createInstance({ id: 'x', service: 's', host: 'h', port: 1, meta })
    expect(Object.keys(i.meta)).toEqual(['__proto__', 'a'])
    expect(Object.getPrototypeOf(i.meta)).toBe(Object.prototype)
    expect(Object.getOwnPropertyDescriptor(i.meta, '__proto__')?.value).toBe('x')
  })

  it('instanceFault names tags and meta that are not all strings', () => {
    const base = { id: 'x', service: 's', host: 'h', port: 1 }
    expect(instanceFault({ ...base, tags: ['a', 1 as unknown as string] })?.field).toBe('tags')
    expect(instanceFault({ ...base, tags: 'a' as unknown as string[] })?.field).toBe('tags')
    expect(instanceFault({ ...base, meta: { a: 1 as unknown as string } })?.field).toBe('meta')
    expect(instanceFault({ ...base, meta: [] as unknown as Record<string, string> })?.field).toBe(
      'meta',
    )
    expect(instanceFault({ ...base, tags: ['a'], meta: { a: 'b' } })).toBeUndefined()
  })
})

describe('diffInstances', () => {
  /** The definition, by maps: what both of diffInstances' paths must return. */
  function reference(
    before: readonly Instance[],
    after: readonly Instance[],
  ): { added: string[]; removed: string[]; updated: string[] } {
    const old = new Map(before.map((i) => [i.key, i]))
    const now = new Map(after.map((i) => [i.key, i]))
    return {
      added: after.filter((i) => !old.has(i.key)).map((i) => i.key),
      removed: before.filter((i) => !now.has(i.key)).map((i) => i.key),
      updated: after
        .filter((i) => old.has(i.key) && !sameInstance(old.get(i.key) as Instance, i))
        .map((i) => i.key),
    }
  }
  const keysOf = (d: InstanceDiff): { added: string[]; removed: string[]; updated: string[] } => ({
    added: d.added.map((i) => i.key),
    removed: d.removed.map((i) => i.key),
    updated: d.updated.map((i) => i.key),
  })
  /** A set of instances with unique keys from a small alphabet (so sets overlap), in any order. */
  const set = fc
    .uniqueArray(
      fc.record({
        key: fc.string({ unit: fc.constantFrom('a', 'b', 'c', '/'), maxLength: 4 }),
        port: fc.integer({ min: 1, max: 3 }),
      }),
      { selector: (r) => r.key, maxLength: 12 },
    )
    .map((rs) =>
      rs.map((r) =>
        createInstance({ id: r.key || 'x', key: r.key, service: 's', host: 'h', port: r.port }),
      ),
    )
  const byKey = (l: readonly Instance[]): Instance[] =>
    [...l].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))

  it('agrees with the definition for sorted sets (the merge walk)', () => {
    fc.assert(
      fc.property(set, set, (b, a) => {
        const before = byKey(b)
        const after = byKey(a)
        expect(sortedByKey(before) && sortedByKey(after)).toBe(true)
        expect(keysOf(diffInstances(before, after))).toEqual(reference(before, after))
      }),
      { numRuns: 500 },
    )
  })

  it('agrees with the definition for sets in any order (the maps)', () => {
    fc.assert(
      fc.property(set, set, (before, after) => {
        expect(keysOf(diffInstances(before, after))).toEqual(reference(before, after))
      }),
      { numRuns: 500 },
    )
  })

  it('sortedByKey: strictly increasing only (a repeated key is not sorted)', () => {
    const i = (key: string): Instance =>
      createInstance({ id: key, key, service: 's', host: 'h', port: 1 })
    expect(sortedByKey([])).toBe(true)
    expect(sortedByKey([i('a'), i('b'), i('c')])).toBe(true)
    expect(sortedByKey([i('a'), i('a')])).toBe(false)
    expect(sortedByKey([i('b'), i('a')])).toBe(false)
  })
})
