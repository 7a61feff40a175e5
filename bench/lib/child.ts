/**
 * Helper processes for benchmarks (the registry writer, the Consul test server), so that their
 * CPU does not share the measuring event loop. A tiny request/reply protocol over the IPC
 * channel: the parent sends `{ id, ...request }`, the child answers `{ id, ...reply }`.
 * Every wait has a deadline: a child that dies or hangs fails the benchmark, it never hangs it.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'

export type Message = Record<string, unknown>

interface Pending {
  resolve(reply: Message): void
  reject(err: Error): void
  timer: NodeJS.Timeout
}

export class HelperProcess {
  readonly #child: ChildProcess
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #stderr = ''
  #exited = false

  private constructor(child: ChildProcess) {
    this.#child = child
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => {
      this.#stderr = (this.#stderr + chunk).slice(-4_000)
    })
    child.on('message', (raw) => {
      const msg = raw as Message
      const id = msg.id
      if (typeof id !== 'number') return
      const p = this.#pending.get(id)
      if (p === undefined) return
      this.#pending.delete(id)
      clearTimeout(p.timer)
      if (typeof msg.error === 'string') p.reject(new Error(msg.error))
      else p.resolve(msg)
    })
    child.on('exit', (code, signal) => {
      this.#exited = true
      const err = new Error(`helper exited (${String(code ?? signal)}): ${this.#stderr}`)
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer)
        p.reject(err)
      }
      this.#pending.clear()
    })
  }

  /** Forks `script` (TypeScript, through tsx) and waits for its `{ type: 'ready' }` message. */
  static async start(
    script: string,
    args: readonly string[] = [],
    readyTimeoutMs = 15_000,
  ): Promise<{ helper: HelperProcess; ready: Message }> {
    const child = fork(script, [...args], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    })
    const helper = new HelperProcess(child)
    const ac = new AbortController()
    const timer = setTimeout(() => {
      ac.abort(
        new Error(`helper ${script} not ready within ${readyTimeoutMs} ms: ${helper.#stderr}`),
      )
    }, readyTimeoutMs)
    try {
      for (;;) {
        const [msg] = (await Promise.race([
          once(child, 'message', { signal: ac.signal }),
          once(child, 'exit', { signal: ac.signal }).then(() => {
            throw new Error(`helper ${script} exited before it was ready: ${helper.#stderr}`)
          }),
        ])) as [Message]
        if (msg.type === 'ready') return { helper, ready: msg }
      }
    } catch (err) {
      child.kill('SIGKILL')
      throw ac.signal.aborted ? (ac.signal.reason as Error) : err
    } finally {
      clearTimeout(timer)
      ac.abort()
    }
  }

  get pid(): number | undefined {
    return this.#child.pid
  }

  /** Sends a request and waits for its reply (rejects on `error` replies, exit or deadline). */
  request(msg: Message, timeoutMs = 10_000): Promise<Message> {
    if (this.#exited) return Promise.reject(new Error(`helper has exited: ${this.#stderr}`))
    const id = this.#nextId++
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(
          new Error(`helper did not answer ${JSON.stringify(msg.type)} within ${timeoutMs} ms`),
        )
      }, timeoutMs)
      this.#pending.set(id, { resolve, reject, timer })
      this.#child.send({ ...msg, id })
    })
  }

  /** Asks the helper to exit, then kills it if it has not within `timeoutMs`. */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.#exited) return
    const exited = once(this.#child, 'exit')
    this.#child.send({ type: 'exit', id: 0 })
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs)
    try {
      await exited
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * Child side: answers requests with `handler`, reports thrown errors as `{ error }`, and exits on
 * `{ type: 'exit' }` or when the parent goes away (the IPC channel closes).
 */
export function serveRequests(
  handler: (msg: Message) => Promise<Message>,
  onExit: () => Promise<void>,
): void {
  const send = (m: Message): void => {
    if (process.connected) process.send?.(m)
  }
  let exiting = false
  const exit = async (): Promise<void> => {
    if (exiting) return
    exiting = true
    await onExit().catch(() => undefined)
    process.exit(0)
  }
  process.on('disconnect', () => {
    void exit()
  })
  process.on('message', (raw) => {
    const msg = raw as Message
    if (msg.type === 'exit') {
      void exit()
      return
    }
    handler(msg).then(
      (reply) => {
        send({ ...reply, id: msg.id })
      },
      (err: unknown) => {
        send({ id: msg.id, error: err instanceof Error ? err.message : String(err) })
      },
    )
  })
}

export function sendReady(info: Message = {}): void {
  process.send?.({ ...info, type: 'ready' })
}
