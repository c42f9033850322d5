// Vite's dev server as people run it behind a proxy. No `server.hmr` settings are
// needed behind wsgate: the HMR client connects to the port the page came from (the
// proxy's), so the WebSocket goes through wsgate. Set `server.hmr.clientPort` only when
// the browser reaches the proxy on a port different from the page's URL.
// The cache lives where the test says (VITE_CACHE_DIR), never in the shared
// node_modules, so parallel runs do not share state.
import { defineConfig } from "vite";

export default defineConfig({
  cacheDir: process.env.VITE_CACHE_DIR || "node_modules/.vite",
  clearScreen: false,
  logLevel: "info",
});
