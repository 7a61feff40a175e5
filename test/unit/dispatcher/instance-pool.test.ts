/** Which instance pools stay undici's Pool (the rest are wayfind's own Client sets). */
import { describe, expect, it } from 'vitest'
import { mayMultiplex, usesOwnConnections } from '../../../src/dispatcher/instance-pool.js'

describe('usesOwnConnections', () => {
  it('keeps undici Pool for HTTP/2 and Pool-only options, and only for those', () => {
    expect(usesOwnConnections({})).toBe(true)
    expect(usesOwnConnections({ allowH2: false, clientTtl: null })).toBe(true)
    expect(usesOwnConnections({ allowH2: true })).toBe(false)
    expect(usesOwnConnections({ useH2c: true })).toBe(false)
    expect(usesOwnConnections({ factory: () => undefined })).toBe(false)
    expect(usesOwnConnections({ clientTtl: 60_000 })).toBe(false)
    expect(mayMultiplex({ allowH2: true })).toBe(true)
    expect(mayMultiplex({ useH2c: true })).toBe(true)
    expect(mayMultiplex({})).toBe(false)
  })
})
