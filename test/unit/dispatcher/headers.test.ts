import { describe, expect, it } from 'vitest'
import { withHost } from '../../../src/dispatcher/headers.js'

describe('withHost', () => {
  it('adds host to each header shape without mutating the input', () => {
    expect(withHost(undefined, 'payments')).toEqual({ host: 'payments' })
    expect(withHost(null, 'payments')).toEqual({ host: 'payments' })
    const obj = { accept: 'x' }
    expect(withHost(obj, 'payments')).toEqual({ host: 'payments', accept: 'x' })
    expect(obj).toEqual({ accept: 'x' })
    const flat = ['accept', 'x']
    expect(withHost(flat, 'payments')).toEqual(['accept', 'x', 'host', 'payments'])
    expect(flat).toEqual(['accept', 'x'])
    expect(withHost(new Map([['accept', 'x']]), 'payments')).toEqual([
      'accept',
      'x',
      'host',
      'payments',
    ])
    expect(withHost(new Map([['a', ['1', '2']]]), 'p')).toEqual(['a', '1', 'a', '2', 'host', 'p'])
  })

  it('keeps a caller Host in any case and any shape', () => {
    const obj = { HoSt: 'mine' }
    expect(withHost(obj, 'payments')).toBe(obj)
    const flat = ['x', '1', 'HOST', 'mine']
    expect(withHost(flat, 'payments')).toBe(flat)
    expect(withHost(new Map([['Host', 'mine']]), 'payments')).toEqual(['Host', 'mine'])
    // A value that merely contains "host" is not a Host header.
    expect(withHost({ 'x-host': 'a' }, 'p')).toEqual({ host: 'p', 'x-host': 'a' })
  })
})
