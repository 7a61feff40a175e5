/**
 * Secured etcd: user/password auth (including a simple token that expires across a reconnect,
 * docs/design/etcd.md#auth-token-expiry) and TLS with a client certificate.
 */
import { inspect } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, isWayfindError } from '../../../src/errors.js'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import type { NormalizedRegistration, RegisterContext } from '../../../src/registration/contract.js'
import { makeTestCerts, type TestCerts } from '../../support/certs.js'
import { enableAuth, EtcdServer } from '../../support/etcd.js'
import { TcpProxy } from '../../support/tcp-proxy.js'
import { hasIds, Recorder, wayfindValue } from './helpers.js'

const PASSWORD = 's3cret-Pa55word!'

function reg(id: string): NormalizedRegistration {
  return {
    name: 'svc',
    id,
    address: '127.0.0.1',
    port: 8080,
    tags: [],
    meta: {},
    weight: 1,
    check: undefined,
  }
}

function ctx(): RegisterContext & { controller: AbortController } {
  const controller = new AbortController()
  return { signal: controller.signal, controller, onState: () => {} }
}

describe('etcd auth (--auth-token-ttl=3)', () => {
  let server: EtcdServer
  beforeAll(async () => {
    server = await EtcdServer.start({ authTokenTtlS: 3 })
    await enableAuth(server, PASSWORD)
  })
  afterAll(async () => {
    await server.remove()
  })

  it('watches and registers with user/password, and keeps watching after the token expired across a reconnect', async () => {
    const prefix = '/a1/'
    const writer = server.client({ auth: { username: 'root', password: PASSWORD } })
    await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8001))
    const proxy = await TcpProxy.start({ port: server.clientPort })
    const relists: string[] = []
    const provider = EtcdProvider.withHooks(
      { hosts: proxy.host, prefix, auth: { username: 'root', password: PASSWORD } },
      {
        onRelist: (_service, why) => {
          relists.push(why)
        },
      },
    )
    // The registration uses its own client (straight to etcd): a second loop sharing the
    // watcher's token could refresh it first and hide the path under test.
    const registrar = EtcdProvider.withHooks(
      { hosts: server.host, prefix, auth: { username: 'root', password: PASSWORD } },
      {},
    )
    const rec = new Recorder()
    const ac = new AbortController()
    const c = ctx()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      await rec.until(hasIds('a'))
      await registrar.register(reg('self'), c)
      await rec.until(hasIds('a', 'self'))
      // An outage longer than the token TTL (3 s, checked by etcd every second): the token the
      // stream was opened with is dead when it reconnects (fault injection: a 5 s outage).
      proxy.cut()
      await new Promise((r) => setTimeout(r, 5_000))
      await writer.put(`${prefix}svc/b`).value(wayfindValue('b', 8002))
      proxy.heal()
      await rec.until(hasIds('a', 'b', 'self'), 15_000, 'the write made while the token expired')
      await writer.put(`${prefix}svc/c`).value(wayfindValue('c', 8003))
      await rec.until(hasIds('a', 'b', 'c', 'self'), 10_000)
      // The recovery went through the expired-token path (a cancel, then a re-authenticating list).
      expect(relists.some((why) => /auth token/i.test(why))).toBe(true)
    } finally {
      c.controller.abort()
      ac.abort()
      await registrar.close()
      await provider.close()
      await proxy.close()
    }
  })

  it('a wrong password gives a typed error that does not contain the password', async () => {
    const wrong = 'wrong-Pa55word-xyz'
    const provider = EtcdProvider.withHooks(
      { hosts: server.host, prefix: '/a2/', auth: { username: 'root', password: wrong } },
      {},
    )
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      const err = await rec.untilError(() => true)
      expect(err.code).toBe(ErrorCode.REGISTRY_UNAVAILABLE)
      expect(err.retryable).toBe(false)
      expect(err.message).toMatch(/credentials of user "root"/)
      const rejected = await provider.register(reg('x'), ctx()).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(isWayfindError(rejected)).toBe(true)
      expect((rejected as { code: string }).code).toBe(ErrorCode.REGISTRATION_FAILED)
      for (const e of [err, rejected]) {
        const rendered = `${inspect(e, { depth: 10 })} ${JSON.stringify(e)} ${String((e as Error).stack)}`
        expect(rendered).not.toContain(wrong)
        expect(rendered).not.toContain(PASSWORD)
      }
      expect(rec.snapshots).toEqual([])
    } finally {
      ac.abort()
      await provider.close()
    }
  })
})

describe('etcd TLS with a client certificate', () => {
  let certs: TestCerts
  let server: EtcdServer
  beforeAll(async () => {
    certs = makeTestCerts()
    server = await EtcdServer.start({ tls: certs })
  })
  afterAll(async () => {
    await server.remove()
    certs.remove()
  })

  it('watches and registers over mutual TLS', async () => {
    const provider = EtcdProvider.withHooks(
      {
        hosts: server.host,
        prefix: '/tls/',
        credentials: {
          rootCertificate: certs.ca,
          certChain: certs.clientCert,
          privateKey: certs.clientKey,
        },
      },
      {},
    )
    expect(server.host.startsWith('https://')).toBe(true)
    const rec = new Recorder()
    const ac = new AbortController()
    const c = ctx()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      await rec.until((s) => s.instances.length === 0)
      await provider.register(reg('tls-1'), c)
      await rec.until(hasIds('tls-1'))
    } finally {
      c.controller.abort()
      ac.abort()
      await provider.close()
    }
  })

  it('without the client certificate the connection is refused with a typed, retryable error', async () => {
    const provider = EtcdProvider.withHooks(
      {
        hosts: server.host,
        prefix: '/tls/',
        credentials: { rootCertificate: certs.ca },
        requestTimeoutMs: 2_000,
      },
      {},
    )
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      const err = await rec.untilError(() => true)
      expect(err.code).toBe(ErrorCode.REGISTRY_UNAVAILABLE)
      expect(rec.snapshots).toEqual([])
    } finally {
      ac.abort()
      await provider.close()
    }
  })
})
