import { describe, expect, it } from 'vitest'
import { createWayfind } from '../../../src/client.js'
import { ErrorCode, InvalidOptionError } from '../../../src/errors.js'
import { etcd } from '../../../src/registry/etcd/provider.js'
import { memoryRegistry } from '../../../src/registry/memory.js'
import { consulNameRule, etcdNameRule } from '../../../src/registry/service-name.js'

describe('service name rules', () => {
  it('Consul: dot-segments, "/", "?", "#", whitespace, control and U+FFFD are refused', () => {
    for (const bad of ['.', '..', 'a/b', 'a?b', 'a#b', 'a b', 'a\nb', 'a\u0000', 'a\uFFFD'])
      expect(consulNameRule(bad), JSON.stringify(bad)).toBeDefined()
    for (const ok of ['payments', 'pay_ments', 'pay.ments', 'a..b', 'PAY-1', 'a%b', 'a:b'])
      expect(consulNameRule(ok), ok).toBeUndefined()
  })

  it('etcd: a name is one key segment ("/" refused), dots are fine', () => {
    expect(etcdNameRule('a/b')).toBeDefined()
    expect(etcdNameRule('a b')).toBeDefined()
    expect(etcdNameRule('..')).toBeUndefined()
    expect(etcdNameRule('user.rpc')).toBeUndefined()
  })

  it('etcd resolve() refuses "a/b" at once, before connecting', async () => {
    // Nothing listens on port 1: only a rejection before any connection ends this quickly.
    const wf = createWayfind({ registry: etcd({ hosts: '127.0.0.1:1' }) })
    try {
      await expect(wf.resolve('pay/ments', { timeoutMs: 60_000 })).rejects.toMatchObject({
        code: ErrorCode.INVALID_OPTION,
        option: 'service',
      })
      expect(() => wf.instances('a b')).toThrow(InvalidOptionError)
    } finally {
      await wf.close()
    }
  })

  it('memory: the Consul rule, in resolve(), put() and register()', async () => {
    const registry = memoryRegistry()
    const wf = createWayfind({ registry })
    try {
      await expect(wf.resolve('..', { timeoutMs: 60_000 })).rejects.toBeInstanceOf(
        InvalidOptionError,
      )
      expect(() => registry.put('pay/ments', { id: 'x', host: '10.0.0.1', port: 1 })).toThrow(
        InvalidOptionError,
      )
      await expect(
        wf.register({ name: '..', address: '10.0.0.1', port: 8080 }),
      ).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTION })
    } finally {
      await wf.close()
    }
  })
})
