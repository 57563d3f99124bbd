/**
 * Bodies staged one after another in a shared object (a staging log, or an S3 object of a group)
 * each stand on lines of their own: a line break follows a body that does not end with one, so
 * NDJSON stays NDJSON and a JSON document on one line stays one line. Staging adds it; a write
 * that copies a body's range back out adds it again.
 */
export const LINE_FEED = 0x0a;
export const NEW_LINE = new Uint8Array([LINE_FEED]);

/** Whether `bytes` needs no line break after it (it ends with one, or is empty). */
export const endsLine = (bytes: Uint8Array, length = bytes.byteLength): boolean => length === 0 || bytes[length - 1] === LINE_FEED;
