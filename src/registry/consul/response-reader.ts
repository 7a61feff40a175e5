/**
 * Reads one Consul answer into memory, as an undici dispatch handler.
 *
 * Why not `pool.request()` and a body stream: every answer we read is a bounded JSON document
 * that is parsed whole, so a stream buys nothing, and it costs on the path every change takes.
 * `request()` wraps the body in a Node `Readable` inside an async resource and resolves one
 * promise at the headers and more while the body is consumed: the largest single cost between
 * a change reaching the socket and the change event (docs/performance.md, "Consul: registry
 * change → `change` event"). The limit is enforced chunk by chunk: a declared `content-length`
 * over it is refused before any byte is kept, and a body that grows past it is aborted at once,
 * which closes the connection (or resets the HTTP/2 stream).
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Dispatcher } from 'undici'

/** The answer as read: status, headers (lower-case names, as undici parses them) and text. */
export interface RawAnswer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly text: string
}

/** The body is over the limit: `size` says by how much, in words ("12 bytes", "more than …"). */
export type TooLarge = (size: string) => Error

/**
 * One response, read whole. `done` is called exactly once: with the answer, or with the error
 * that ended the request (transport failure, {@link ResponseReader.abort}, or the limit). It is
 * called from undici's parser callbacks, so it must only hand the result over, never run
 * caller code there (the caller settles a promise).
 */
export class ResponseReader implements Dispatcher.DispatchHandler {
  readonly #maxBytes: number
  readonly #tooLarge: TooLarge
  readonly #done: (error: Error | undefined, answer: RawAnswer | undefined) => void
  #controller: Dispatcher.DispatchController | undefined
  /** Set by an abort that came before undici started the request (queued in the pool). */
  #pendingAbort: Error | undefined
  #finished = false
  #status = 0
  #headers: IncomingHttpHeaders = {}
  #chunks: Buffer[] = []
  #total = 0

  constructor(
    maxBytes: number,
    tooLarge: TooLarge,
    done: (error: Error | undefined, answer: RawAnswer | undefined) => void,
  ) {
    this.#maxBytes = maxBytes
    this.#tooLarge = tooLarge
    this.#done = done
  }

  /** Ends the request with `reason` (timeout, caller's signal), whether it started or not. */
  abort(reason: Error): void {
    if (this.#finished) return
    if (this.#controller === undefined) {
      // Still queued: undici starts it later and we abort it then; the caller learns now.
      this.#pendingAbort = reason
      this.#finish(reason, undefined)
      return
    }
    this.#controller.abort(reason)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#pendingAbort !== undefined) controller.abort(this.#pendingAbort)
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    // 1xx informational answers come before the real one.
    if (statusCode < 200) return
    this.#status = statusCode
    this.#headers = headers
    const declared = Number(headers['content-length'])
    if (Number.isFinite(declared) && declared > this.#maxBytes)
      this.#fail(controller, this.#tooLarge(`${declared} bytes`))
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#finished) return
    this.#total += chunk.length
    if (this.#total > this.#maxBytes) {
      this.#fail(controller, this.#tooLarge(`more than ${this.#maxBytes} bytes`))
      return
    }
    this.#chunks.push(chunk)
  }

  onResponseEnd(): void {
    const chunks = this.#chunks
    const text =
      chunks.length === 1
        ? (chunks[0] as Buffer).toString('utf8')
        : Buffer.concat(chunks, this.#total).toString('utf8')
    this.#chunks = []
    this.#finish(undefined, { status: this.#status, headers: this.#headers, text })
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#chunks = []
    this.#finish(error, undefined)
  }

  /** Reports the limit first, then aborts: undici's own error for the abort must not win. */
  #fail(controller: Dispatcher.DispatchController, error: Error): void {
    this.#chunks = []
    this.#finish(error, undefined)
    controller.abort(error)
  }

  #finish(error: Error | undefined, answer: RawAnswer | undefined): void {
    if (this.#finished) return
    this.#finished = true
    this.#done(error, answer)
  }
}
