import { AppError } from '../../src/model/errors.ts';

/** The AppError a call throws; fails the test when it throws nothing or something else. */
export function refusal(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}
