import { describe, expect, it } from 'vitest'
import { KeepAlive } from '../../../src/core/keep-alive.js'

describe('KeepAlive', () => {
  it('is ref’d while at least one hold is open, and only then', () => {
    const ka = new KeepAlive()
    expect(ka.active).toBe(false)
    const a = ka.hold()
    const b = ka.hold()
    expect([ka.holds, ka.active]).toEqual([2, true])
    a()
    a() // idempotent: a second release must not drop b's hold
    expect([ka.holds, ka.active]).toEqual([1, true])
    b()
    expect([ka.holds, ka.active]).toEqual([0, false])
    const c = ka.hold()
    expect(ka.active).toBe(true)
    c()
    expect(ka.active).toBe(false)
  })

  it('while() holds until the promise settles, either way, and passes the result on', async () => {
    const ka = new KeepAlive()
    let resolve!: (v: number) => void
    const ok = ka.while(new Promise<number>((r) => (resolve = r)))
    expect(ka.active).toBe(true)
    resolve(7)
    await expect(ok).resolves.toBe(7)
    expect(ka.active).toBe(false)
    const failed = ka.while(Promise.reject(new Error('no')))
    expect(ka.active).toBe(true)
    await expect(failed).rejects.toThrow('no')
    expect(ka.holds).toBe(0)
  })
})

describe('awaited resolve() holds the process keep-alive', () => {
  it('from the first await to its settlement (fake clock)', async () => {
    const { keepAlive } = await import('../../../src/core/keep-alive.js')
    const { createWayfind, memoryRegistry } = await import('../../../src/index.js')
    const { FakeClock } = await import('../../support/fake-clock.js')
    const clock = new FakeClock()
    const wf = createWayfind({ registry: memoryRegistry({ clock }), clock })
    const before = keepAlive.holds
    const pending = wf.resolve('payments', { timeoutMs: 1_000 })
    const settled = expect(pending).rejects.toMatchObject({ code: 'WAYFIND_ERR_RESOLVE_TIMEOUT' })
    await Promise.resolve() // resolve() starts waiting one microtask later
    await Promise.resolve()
    expect(keepAlive.holds).toBe(before + 1)
    clock.advance(1_000)
    await settled
    expect(keepAlive.holds).toBe(before)
    await wf.close()
  })
})
