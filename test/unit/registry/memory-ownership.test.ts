/**
 * Ownership of an instance id on the memory registry, through the public client: two clients
 * (as two processes would be) register the same name and id.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createWayfind, type Wayfind } from '../../../src/client.js'
import { ErrorCode, RegistrationConflictError } from '../../../src/errors.js'
import type { RegistrationEvent } from '../../../src/events.js'
import { memoryRegistry } from '../../../src/registry/memory.js'

const clients: Wayfind[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close()
})

function twoClients(): { registry: ReturnType<typeof memoryRegistry>; a: Wayfind; b: Wayfind } {
  const registry = memoryRegistry()
  const a = createWayfind({ registry: registry.client() })
  const b = createWayfind({ registry: registry.client() })
  clients.push(a, b)
  return { registry, a, b }
}

const first = { name: 'pay', id: 'pay-1', address: '10.0.0.1', port: 8080 }
const second = { ...first, port: 9090 }

describe('memory registry: ownership of an instance id', () => {
  it('refuses an id that a live registration holds, and the holder stays registered', async () => {
    const { registry, a, b } = twoClients()
    const held = await a.register(first)
    await expect(b.register(second)).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof RegistrationConflictError &&
        e.code === ErrorCode.REGISTRATION_CONFLICT &&
        !e.retryable &&
        /replace: true/.test(e.message),
    )
    expect(held.state).toBe('registered')
    expect(registry.list('pay').map((i) => i.port)).toEqual([8080])
  })

  it('replace: true takes over: the old owner gets registrationLost with the conflict and its deregister keeps the new entry', async () => {
    const { registry, a, b } = twoClients()
    const lost: RegistrationEvent[] = []
    a.events.on('registrationLost', (e) => lost.push(e))
    const old = await a.register(first)
    const taker = await b.register(second, { replace: true })
    expect(lost).toHaveLength(1)
    expect(lost[0]?.error).toBeInstanceOf(RegistrationConflictError)
    expect(old.state).toBe('lost')
    await old.deregister()
    expect(registry.list('pay').map((i) => i.port)).toEqual([9090])
    await taker.deregister()
    expect(registry.list('pay')).toEqual([])
  })

  it('an entry with our own address and port (an earlier run of this endpoint) is taken over', async () => {
    const { registry, a, b } = twoClients()
    await a.register(first)
    await b.register(first)
    expect(registry.list('pay')).toHaveLength(1)
  })

  it('rejects a non-boolean replace naming the option', async () => {
    const { b } = twoClients()
    await expect(
      b.register(second, { replace: 'yes' as unknown as boolean }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTION, option: 'options.replace' })
  })
})
