import { describe, expect, it } from 'vitest'
import { ErrorCode } from '../../../src/errors.js'
import { createInstance, type Instance } from '../../../src/instance.js'
import { applyAnswer, type EntryFault } from '../../../src/registry/answer-policy.js'

const inst = (id: string, port = 8080): Instance =>
  createInstance({ id, key: `n/${id}`, service: 'svc', host: '10.0.0.1', port })
const fault = (id: string | undefined, field = 'Service.Port'): EntryFault => ({
  entry: id === undefined ? '#0/#0' : `n/${id}`,
  key: id === undefined ? undefined : `n/${id}`,
  field,
  reason: 'bad',
})

describe('applyAnswer (the answer policy shared by every provider)', () => {
  it('passes a clean answer through untouched', () => {
    const next = [inst('a')]
    const out = applyAnswer([inst('b')], {
      service: 'svc',
      instances: next,
      faults: [],
      entries: 1,
    })
    expect(out.instances).toBe(next)
    expect(out.error).toBeUndefined()
  })

  it('keeps the last good value of a malformed entry, skips a new one, one error for all', () => {
    const previous = [inst('a'), inst('b', 1)]
    const out = applyAnswer(previous, {
      service: 'svc',
      instances: [inst('a')],
      faults: [fault('b'), fault('c', 'Node.Address')],
      entries: 3,
    })
    expect(out.instances.map((i) => [i.id, i.port])).toEqual([
      ['a', 8080],
      ['b', 1],
    ])
    expect(out.keptAll).toBe(false)
    expect(out.error?.code).toBe(ErrorCode.MALFORMED_INSTANCE)
    expect(out.error).toMatchObject({ service: 'svc', key: 'n/b', field: 'Service.Port' })
    expect(out.error?.entries).toBe(2)
    expect(out.error?.details.map((d) => d.field)).toEqual(['Service.Port', 'Node.Address'])
  })

  it('never lets an all-malformed answer replace a non-empty set', () => {
    const previous = [inst('a'), inst('b')]
    const out = applyAnswer(previous, {
      service: 'svc',
      instances: [],
      faults: [fault(undefined), fault(undefined)],
      entries: 2,
    })
    expect(out.instances).toBe(previous)
    expect(out.keptAll).toBe(true)
    expect(out.error?.message).toMatch(/last good set keeps serving/)
  })

  it('applies an answer whose only other entries were left out on purpose (critical)', () => {
    // 3 entries: 1 malformed, 2 critical (not instances, not faults): the set really shrank.
    const out = applyAnswer([inst('a'), inst('b')], {
      service: 'svc',
      instances: [],
      faults: [fault(undefined)],
      entries: 3,
    })
    expect(out.instances).toEqual([])
    expect(out.keptAll).toBe(false)
  })

  it('reports equal faults with equal signatures, so a lasting fault is reported once', () => {
    const answer = { service: 'svc', instances: [], faults: [fault('x')], entries: 1 }
    expect(applyAnswer([], answer).faultSignature).toBe(applyAnswer([], answer).faultSignature)
    expect(applyAnswer([], answer).faultSignature).not.toBe('')
  })
})
