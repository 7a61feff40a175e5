import { InvalidOptionError } from '../../src/errors.js'

/** Runs `fn` and returns the InvalidOptionError it throws; fails the test otherwise. */
export function invalidOption(fn: () => unknown): InvalidOptionError {
  try {
    fn()
  } catch (err) {
    if (err instanceof InvalidOptionError) return err
    throw err
  }
  throw new Error('expected an InvalidOptionError')
}
