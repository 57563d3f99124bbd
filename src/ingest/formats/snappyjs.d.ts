// snappyjs ships no type declarations; these are the two functions of its index.js.
declare module 'snappyjs' {
  /** Uncompresses a snappy block; throws when it is not one, or would be longer than `maxLength`. */
  export function uncompress(compressed: Uint8Array, maxLength?: number): Uint8Array;
  export function compress(uncompressed: Uint8Array): Uint8Array;
}
