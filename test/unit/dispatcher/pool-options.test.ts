/**
 * wayfind's own instance pool copies two things from undici's `Pool` constructor: which options
 * it keeps for itself or folds into its connector, and how it builds that connector. These tests
 * read the constructor of the installed undici and fail when the option names it takes apart
 * change, so an undici upgrade cannot silently drift from the copy.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createInstance } from '../../../src/instance.js'
import { parseDispatcherOptions } from '../../../src/dispatcher/options.js'
import {
  clientOptions,
  mayMultiplex,
  POOL_ONLY,
  POOL_PASSED_ON,
  poolOptions,
  usesOwnConnections,
} from '../../../src/dispatcher/pool-options.js'

/** The names `Pool`'s constructor destructures from its options (all but the `...rest`). */
function poolConstructorOptions(source: string): string[] {
  const m = /class Pool extends PoolBase \{\s*constructor \(origin, \{([\s\S]*?)\} = \{\}\)/.exec(
    source,
  )
  if (m?.[1] === undefined) throw new Error("Pool's constructor not found in undici's pool.js")
  return m[1]
    .split(',')
    .map((p) => p.trim().split(/\s*=/)[0]?.trim() ?? '')
    .filter((p) => p !== '' && !p.startsWith('...'))
}

function undiciPoolSource(): string {
  const main = createRequire(import.meta.url).resolve('undici')
  return readFileSync(join(dirname(main), 'lib', 'dispatcher', 'pool.js'), 'utf8')
}

describe("undici's Pool options", () => {
  it('are exactly the ones wayfind keeps back from its clients or passes on rebuilt', () => {
    const names = poolConstructorOptions(undiciPoolSource())
    expect(names.sort()).toEqual([...POOL_ONLY, ...POOL_PASSED_ON].sort())
  })

  it('the parser sees a change: a new option in the constructor fails the comparison', () => {
    const changed = undiciPoolSource().replace('clientTtl,', 'clientTtl,\n    maxClientAge,')
    expect(poolConstructorOptions(changed)).toContain('maxClientAge')
  })

  it('client options drop exactly the Pool-only ones', () => {
    const o = parseDispatcherOptions({ pool: { headersTimeout: 1_000, maxCachedSessions: 5 } })
    const instance = createInstance({ id: 'a', service: 'payments', host: '127.0.0.1', port: 1 })
    const client = clientOptions(
      poolOptions(o, instance, { service: 'payments', protocol: 'http:', hostname: 'payments' }),
    )
    expect(Object.keys(client).sort()).toEqual(
      ['connect', 'headersTimeout', 'keepAliveTimeout', 'pipelining'].sort(),
    )
    expect(typeof client.connect).toBe('function')
  })
})

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
