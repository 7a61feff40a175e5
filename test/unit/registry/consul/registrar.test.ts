import { describe, expect, it } from 'vitest'
import { InvalidOptionError } from '../../../../src/errors.js'
import {
  escapeId,
  registrationBody,
  validateConsulRegistration,
} from '../../../../src/registry/consul/registrar.js'
import type { NormalizedRegistration } from '../../../../src/registration/contract.js'

const base: NormalizedRegistration = {
  name: 'payments',
  id: 'payments-1',
  address: '10.0.0.7',
  port: 8080,
  tags: ['v2'],
  meta: { zone: 'a' },
  weight: 5,
  check: undefined,
}

describe('registrationBody', () => {
  it('maps the registration to PascalCase with weights', () => {
    expect(registrationBody(base)).toEqual({
      ID: 'payments-1',
      Name: 'payments',
      Address: '10.0.0.7',
      Port: 8080,
      Tags: ['v2'],
      Meta: { zone: 'a' },
      Weights: { Passing: 5, Warning: 1 },
    })
  })

  it('sends every HTTP check duration as a string with a unit', () => {
    const body = registrationBody({
      ...base,
      check: {
        kind: 'http',
        http: 'http://10.0.0.7:8080/health',
        intervalMs: 10_000,
        timeoutMs: 1_500,
        deregisterCriticalAfterMs: 120_000,
      },
    })
    expect(body.Check).toEqual({
      CheckID: 'service:payments-1',
      Name: "Service 'payments' check",
      HTTP: 'http://10.0.0.7:8080/health',
      Interval: '10s',
      Timeout: '1500ms',
      DeregisterCriticalServiceAfter: '2m',
    })
  })

  it('sends a TTL check as a string, never a bare number (which Consul reads as nanoseconds)', () => {
    const body = registrationBody({
      ...base,
      check: { kind: 'ttl', ttlMs: 30_000, deregisterCriticalAfterMs: undefined },
    })
    expect(body.Check).toEqual({
      CheckID: 'service:payments-1',
      Name: "Service 'payments' check",
      TTL: '30s',
    })
  })
})

describe('validateConsulRegistration', () => {
  it('accepts a sound registration', () => {
    expect(() => {
      validateConsulRegistration({
        ...base,
        check: { kind: 'ttl', ttlMs: 3_000, deregisterCriticalAfterMs: 60_000 },
      })
    }).not.toThrow()
  })

  it.each([
    [{ name: 'a/b' }, 'name'],
    [{ address: '::' }, 'address'],
    [{ weight: 0 }, 'weight'],
    [{ meta: { ['k'.repeat(129)]: 'v' } }, `meta.${'k'.repeat(129)}`],
    [{ meta: { k: 'v'.repeat(513) } }, 'meta.k'],
    [{ check: { kind: 'ttl', ttlMs: 500, deregisterCriticalAfterMs: undefined } }, 'check.ttlMs'],
    [
      {
        check: {
          kind: 'http',
          http: 'ftp://x/h',
          intervalMs: 5_000,
          timeoutMs: 1_000,
          deregisterCriticalAfterMs: undefined,
        },
      },
      'check.http',
    ],
    [
      {
        check: {
          kind: 'http',
          http: 'http://x/h',
          intervalMs: 5_000,
          timeoutMs: 0,
          deregisterCriticalAfterMs: undefined,
        },
      },
      'check.timeoutMs',
    ],
  ] as [Partial<NormalizedRegistration>, string][])('rejects %j naming %s', (overrides, option) => {
    let caught: unknown
    try {
      validateConsulRegistration({ ...base, ...overrides })
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(InvalidOptionError)
    expect((caught as InvalidOptionError).option).toBe(option)
  })
})

describe('escapeId', () => {
  it('escapes / ? # % but keeps check-id colons readable', () => {
    expect(escapeId('a/b?c#d%e')).toBe('a%2Fb%3Fc%23d%25e')
    expect(escapeId('service:web-1')).toBe('service:web-1')
  })
})
