import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { InvalidOptionError } from '../../../../src/errors.js'
import { consulDuration } from '../../../../src/registry/consul/duration.js'
import { parseConsulOptions } from '../../../../src/registry/consul/options.js'

function invalid(fn: () => unknown): InvalidOptionError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError)
    return err as InvalidOptionError
  }
  throw new Error('expected an InvalidOptionError')
}

describe('consulDuration', () => {
  it('always has a unit and is exact', () => {
    expect(consulDuration(300_000)).toBe('5m')
    expect(consulDuration(10_000)).toBe('10s')
    expect(consulDuration(90_000)).toBe('90s')
    expect(consulDuration(1_500)).toBe('1500ms')
    expect(consulDuration(7_200_000)).toBe('2h')
    expect(consulDuration(0.2)).toBe('1ms')
    expect(consulDuration(0)).toBe('0s')
  })
})

describe('parseConsulOptions', () => {
  it('has documented defaults', () => {
    const o = parseConsulOptions({ env: {} })
    expect(o).toMatchObject({
      origin: 'http://127.0.0.1:8500',
      basePath: '',
      https: false,
      token: undefined,
      tls: undefined,
      passingOnly: true,
      consistency: 'default',
      addressKind: 'default',
      waitMs: 300_000,
      maxConnections: 64,
      http2: true,
      maxStreams: 200,
      backoff: { initialMs: 200, maxMs: 30_000 },
      rateLimit: { burstCount: 4, refillMs: 2_000 },
    })
  })

  it('reads CONSUL_HTTP_ADDR (bare host:port too) and CONSUL_HTTP_TOKEN', () => {
    const o = parseConsulOptions({
      env: { CONSUL_HTTP_ADDR: '10.0.0.1:8500', CONSUL_HTTP_TOKEN: 's3cret' },
    })
    expect(o.origin).toBe('http://10.0.0.1:8500')
    expect(o.token).toBe('s3cret')
    const s = parseConsulOptions({
      env: { CONSUL_HTTP_ADDR: '10.0.0.1:8501', CONSUL_HTTP_SSL: 'true' },
    })
    expect(s.origin).toBe('https://10.0.0.1:8501')
    expect(s.https).toBe(true)
  })

  it('lets explicit options win over the environment', () => {
    const o = parseConsulOptions({
      url: 'http://127.0.0.2:1',
      token: 'a',
      env: { CONSUL_HTTP_ADDR: 'http://x:1', CONSUL_HTTP_TOKEN: 'b' },
    })
    expect(o.origin).toBe('http://127.0.0.2:1')
    expect(o.token).toBe('a')
  })

  it('reads CONSUL_CACERT / CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY files for https', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wayfind-opts-'))
    for (const f of ['ca.pem', 'c.pem', 'k.pem']) writeFileSync(join(dir, f), `PEM ${f}`)
    const o = parseConsulOptions({
      url: 'https://127.0.0.1:8501',
      env: {
        CONSUL_CACERT: join(dir, 'ca.pem'),
        CONSUL_CLIENT_CERT: join(dir, 'c.pem'),
        CONSUL_CLIENT_KEY: join(dir, 'k.pem'),
        CONSUL_TLS_SERVER_NAME: 'consul.local',
      },
    })
    expect(String(o.tls?.ca)).toBe('PEM ca.pem')
    expect(String(o.tls?.cert)).toBe('PEM c.pem')
    expect(String(o.tls?.key)).toBe('PEM k.pem')
    expect(o.tls?.servername).toBe('consul.local')
    expect(o.tls?.rejectUnauthorized).toBe(true)
    expect(
      invalid(() =>
        parseConsulOptions({
          url: 'https://h:1',
          env: { CONSUL_CACERT: join(dir, 'missing.pem') },
        }),
      ).option,
    ).toBe('env.CONSUL_CACERT')
  })

  it.each([
    [{ url: 'ftp://h:1' }, 'url'],
    [{ url: 'not a url' }, 'url'],
    [{ url: 'http://127.0.0.1:8500?token=x' }, 'url'],
    [{ waitMs: 10 }, 'waitMs'],
    [{ waitMs: 900_000 }, 'waitMs'],
    [{ maxConnections: 500 }, 'maxConnections'],
    [{ maxConnections: 1.5 }, 'maxConnections'],
    [{ consistency: 'leader' }, 'consistency'],
    [{ addressKind: 'public' }, 'addressKind'],
    [{ tags: 'v2' }, 'tags'],
    [{ passingOnly: 'yes' }, 'passingOnly'],
    [{ backoff: { initialMs: 500, maxMs: 100 } }, 'backoff.maxMs'],
    [{ backoff: { initial: 5 } }, 'backoff.initial'],
    [{ rateLimit: { burstCount: 0 } }, 'rateLimit.burstCount'],
    [{ tls: { ca: '-----BEGIN CERTIFICATE-----' } }, 'tls'],
    [{ url: 'https://h:1', tls: { cert: '-----BEGIN CERTIFICATE-----' } }, 'tls.key'],
    [{ url: 'https://h:1', tls: { ca: '/etc/consul/ca.pem' } }, 'tls.ca'],
    [{ dc: 'dc1' }, 'dc'],
    [{ datacentre: 'dc1' }, 'datacentre'],
    [{ timeoutMs: 5 }, 'timeoutMs'],
  ])('rejects %j naming %s', (options, option) => {
    const err = invalid(() => parseConsulOptions({ env: {}, ...(options as object) }))
    expect(err.option).toBe(option)
    expect(err.message).toContain(option)
  })

  it('calls the datacenter "datacenter", as the README does; "dc" fails naming it', () => {
    expect(parseConsulOptions({ datacenter: 'dc2', env: {} }).datacenter).toBe('dc2')
    expect(invalid(() => parseConsulOptions({ dc: 'dc1', env: {} } as never)).message).toMatch(
      /consul\(\) calls this option "datacenter" now/,
    )
    expect(
      invalid(() => parseConsulOptions({ datacentre: 'dc1', env: {} } as never)).message,
    ).toMatch(/did you mean "datacenter"\?/)
  })

  it('shows URL credentials masked, never as a different valid address', () => {
    const err = invalid(() =>
      parseConsulOptions({ url: 'http://root:hunter2@127.0.0.1:8500', env: {} }),
    )
    expect(err.option).toBe('url')
    expect(err.message).not.toContain('hunter2')
    expect(err.message).toContain('got "http://root:***@127.0.0.1:8500"')
    const fromEnv = invalid(() =>
      parseConsulOptions({ env: { CONSUL_HTTP_ADDR: 'https://tok3n@127.0.0.1:8501' } }),
    )
    expect(fromEnv.option).toBe('env.CONSUL_HTTP_ADDR')
    expect(fromEnv.message).not.toContain('tok3n')
  })

  it('never quotes a token, a misspelt token, or a TLS key', () => {
    const typo = invalid(() => parseConsulOptions({ tokn: 'hunter2', env: {} } as never))
    expect(typo.message).toMatch(/did you mean "token"/)
    expect(typo.message).not.toContain('hunter2')
    const envToken = invalid(() => parseConsulOptions({ env: { CONSUL_HTTP_TOKEN: 'a\nhunter2' } }))
    expect(envToken.option).toBe('env.CONSUL_HTTP_TOKEN')
    expect(envToken.message).toContain('<redacted string, 9 chars>')
    const key = invalid(() =>
      parseConsulOptions({ url: 'https://h:1', tls: { key: 'hunter2-key' }, env: {} }),
    )
    expect(key.option).toBe('tls.key')
    expect(key.message).not.toContain('hunter2')
  })

  it('never echoes a token in its error', () => {
    const err = invalid(() => parseConsulOptions({ token: 'abc\nsecret-value', env: {} }))
    expect(err.option).toBe('token')
    expect(err.message).not.toContain('secret-value')
  })
})
