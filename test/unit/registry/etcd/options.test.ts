import { describe, expect, it } from 'vitest'
import { ErrorCode, InvalidOptionError } from '../../../../src/errors.js'
import {
  leaseTtlSeconds,
  parseEtcdOptions,
  type EtcdRegistryOptions,
} from '../../../../src/registry/etcd/options.js'
import { etcd } from '../../../../src/registry/etcd/provider.js'
import { checkEtcdRegistration } from '../../../../src/registry/etcd/registrar.js'

function invalid(options: unknown): InvalidOptionError {
  try {
    parseEtcdOptions(options as EtcdRegistryOptions)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError)
    return err as InvalidOptionError
  }
  throw new Error('expected an InvalidOptionError')
}

describe('etcd options', () => {
  it('applies defaults', () => {
    const o = parseEtcdOptions({ hosts: 'http://127.0.0.1:2379' })
    expect(o).toMatchObject({
      hosts: ['http://127.0.0.1:2379'],
      prefix: '/services/',
      leaseTtlMs: 10_000,
      keepaliveTimeMs: 10_000,
      keepaliveTimeoutMs: 5_000,
    })
    expect(o.backoff).toEqual({ initialMs: 100, maxMs: 1_000 })
    expect(Object.isFrozen(o)).toBe(true)
  })

  it('adds the trailing slash to the prefix and allows an empty one', () => {
    expect(parseEtcdOptions({ hosts: 'h:1', prefix: '/microservices' }).prefix).toBe(
      '/microservices/',
    )
    expect(parseEtcdOptions({ hosts: 'h:1', prefix: '' }).prefix).toBe('')
  })

  it.each([
    [{ hosts: [] }, 'hosts'],
    [{ hosts: 'localhost' }, 'hosts[0]'],
    [{ hosts: ['h:1', 'ftp://h:2'] }, 'hosts[1]'],
    [{ hosts: ['http://a:1', 'https://b:1'] }, 'hosts'],
    [
      { hosts: 'http://a:1', credentials: { rootCertificate: '-----BEGIN CERTIFICATE-----' } },
      'hosts',
    ],
    [
      { hosts: 'a:1', credentials: { rootCertificate: '/etc/ca.pem' } },
      'credentials.rootCertificate',
    ],
    [
      { hosts: 'a:1', credentials: { rootCertificate: '-----BEGIN X', certChain: '-----BEGIN Y' } },
      'credentials.privateKey',
    ],
    [{ hosts: 'a:1', auth: { username: '', password: 'p' } }, 'auth.username'],
    [{ hosts: 'a:1', auth: { username: 'u', password: 3 } }, 'auth.password'],
    [{ hosts: 'a:1', leaseTtlMs: 999 }, 'leaseTtlMs'],
    [{ hosts: 'a:1', keepaliveTimeMs: 1_000 }, 'keepaliveTimeMs'],
    [{ hosts: 'a:1', backoff: { initialMs: 500, maxMs: 100 } }, 'backoff.maxMs'],
    [{ hosts: 'a:1', requestTimeout: 5 }, 'requestTimeout'],
    [{ hosts: 'a:1', retryInitialMs: 50 }, 'retryInitialMs'],
    [{ hosts: 'a:1', requestTimeoutMs: Number.NaN }, 'requestTimeoutMs'],
    [{ hosts: 'a:1', pageSize: 0 }, 'pageSize'],
    [{ hosts: 'a:1', codec: {} }, 'codec'],
  ])('rejects %j naming %s', (options, option) => {
    const err = invalid(options)
    expect(err.code).toBe(ErrorCode.INVALID_OPTION)
    expect(err.option).toBe(option)
    expect(err.message).toContain(option)
  })

  it('never echoes a password or a key in errors', () => {
    const err = invalid({ hosts: 'a:1', auth: { username: 'u', password: '' } })
    expect(err.message).not.toContain('""')
    const keyErr = invalid({ hosts: 'a:1', credentials: { rootCertificate: 'secret-material' } })
    expect(keyErr.message).not.toContain('secret-material')
  })

  it('refuses unknown keys with a near match (requestTimeout used to be accepted silently)', () => {
    expect(() => etcd({ hosts: 'a:1', requestTimeout: 5 } as never)).toThrow(
      /etcd\(\) has no option "requestTimeout"; did you mean "requestTimeoutMs"\?/,
    )
  })

  it.each([
    ['retryInitialMs', 'backoff.initialMs'],
    ['retryMaxMs', 'backoff.maxMs'],
  ])('refuses the old spelling %s, naming %s', (old, now) => {
    expect(invalid({ hosts: 'a:1', [old]: 500 }).message).toContain(`"${now}"`)
  })

  it('never quotes a password given as a string, in a host URL, or a private key', () => {
    const asString = invalid({ hosts: 'a:1', auth: 'root:hunter2' })
    expect(asString.option).toBe('auth')
    expect(asString.message).not.toContain('hunter2')
    expect(asString.message).toContain('<redacted string, 12 chars>')

    const inUrl = invalid({ hosts: ['http://root:hunter2@host:2379'] })
    expect(inUrl.option).toBe('hosts[0]')
    expect(inUrl.message).not.toContain('hunter2')
    expect(inUrl.message).toContain('"http://root:***@host:2379"')
    expect(inUrl.message).toMatch(/credentials go in the "auth" option/)

    const bareHost = invalid({ hosts: 'root:hunter2@host:2379' })
    expect(bareHost.message).not.toContain('hunter2')

    const key = invalid({
      hosts: 'a:1',
      credentials: {
        rootCertificate: '-----BEGIN A',
        certChain: '-----BEGIN B',
        privateKey: 'k3y',
      },
    })
    expect(key.option).toBe('credentials.privateKey')
    expect(key.message).not.toContain('k3y')
    // A misspelt secret is as secret as the real one.
    const typo = invalid({ hosts: 'a:1', auth: { username: 'u', pasword: 'hunter2' } })
    expect(typo.message).toMatch(/did you mean "auth\.password"/)
    expect(typo.message).not.toContain('hunter2')
  })

  it('etcd() validates at construction and does no I/O', async () => {
    expect(() => etcd({ hosts: '' })).toThrow(InvalidOptionError)
    const p = etcd({ hosts: '127.0.0.1:1' })
    expect(p.name).toBe('etcd')
    await p.close()
    expect(() => {
      p.watch(
        'x',
        { onSnapshot: () => {}, onError: () => {} },
        { signal: new AbortController().signal },
      )
    }).toThrow(/close/)
  })

  it('rounds lease TTLs up to whole seconds', () => {
    expect(leaseTtlSeconds(1_000)).toBe(1)
    expect(leaseTtlSeconds(1_001)).toBe(2)
    expect(leaseTtlSeconds(10_000)).toBe(10)
  })

  it('takes the lease TTL from check.ttlMs, else leaseTtlMs', () => {
    const o = parseEtcdOptions({ hosts: 'a:1', leaseTtlMs: 4_000 })
    const reg = {
      name: 's',
      id: 'i',
      address: 'h',
      port: 1,
      tags: [],
      meta: {},
      weight: 1,
      check: undefined,
    }
    expect(checkEtcdRegistration(reg, o)).toBe(4)
    expect(
      checkEtcdRegistration(
        { ...reg, check: { kind: 'ttl', ttlMs: 2_500, deregisterCriticalAfterMs: undefined } },
        o,
      ),
    ).toBe(3)
  })
})
