/**
 * The server parses `wait`, `Interval`, `TTL`... with a port of Go's time.ParseDuration; these
 * cases come from Go's own table (src/time/time_test.go parseDurationTests).
 */
import { describe, expect, it } from 'vitest'
import { formatGoDuration, parseGoDuration } from '../../support/consul-server/go-duration.js'

describe('parseGoDuration', () => {
  it.each([
    ['0', 0],
    ['5s', 5e9],
    ['30s', 30e9],
    ['1478s', 1478e9],
    ['-5s', -5e9],
    ['+5s', 5e9],
    ['-0', 0],
    ['+0', 0],
    ['5.0s', 5e9],
    ['5.6s', 5.6e9],
    ['5.s', 5e9],
    ['.5s', 0.5e9],
    ['1.004s', 1.004e9],
    ['100.00100s', 100.001e9],
    ['10ns', 10],
    ['11us', 11e3],
    ['12µs', 12e3],
    ['12μs', 12e3],
    ['13ms', 13e6],
    ['15m', 15 * 60e9],
    ['16h', 16 * 3600e9],
    ['3h30m', 3.5 * 3600e9],
    ['10.5s4m', 4 * 60e9 + 10.5e9],
    ['-2m3.4s', -(2 * 60e9 + 3.4e9)],
    ['1h2m3s4ms5us6ns', 3600e9 + 2 * 60e9 + 3e9 + 4e6 + 5e3 + 6],
    ['39h9m14.425s', 39 * 3600e9 + 9 * 60e9 + 14.425e9],
  ])('%s', (input, ns) => {
    expect(parseGoDuration(input)).toBeCloseTo(ns, -1)
  })

  it.each([
    ['', 'time: invalid duration ""'],
    ['3', 'time: missing unit in duration "3"'],
    ['10', 'time: missing unit in duration "10"'],
    ['-', 'time: invalid duration "-"'],
    ['s', 'time: invalid duration "s"'],
    ['.', 'time: invalid duration "."'],
    ['-.', 'time: invalid duration "-."'],
    ['.s', 'time: invalid duration ".s"'],
    ['+.s', 'time: invalid duration "+.s"'],
    ['1d', 'time: unknown unit "d" in duration "1d"'],
    ['5sec', 'time: unknown unit "sec" in duration "5sec"'],
  ])("rejects %j with Go's message", (input, message) => {
    expect(() => parseGoDuration(input)).toThrow(message)
  })
})

describe('formatGoDuration', () => {
  it.each([
    [0, '0s'],
    [50, '50ms'],
    [1_000, '1s'],
    [1_500, '1.5s'],
    [60_000, '1m0s'],
    [90_000, '1m30s'],
    [3_600_000, '1h0m0s'],
  ])('%d ms → %s', (ms, text) => {
    expect(formatGoDuration(ms)).toBe(text)
  })
})
