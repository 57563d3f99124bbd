// Files imported `with { type: 'file' }` resolve to a path (inside the compiled binary: /$bunfs/…).
declare module '*.so' {
  const path: string;
  export default path;
}
declare module '*.wasm' {
  const path: string;
  export default path;
}
declare module '*.data' {
  const path: string;
  export default path;
}
declare module '*.css' {
  const path: string;
  export default path;
}
declare module '*.png' {
  const path: string;
  export default path;
}
