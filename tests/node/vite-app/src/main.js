// The page's entry: renders the message module and hot-swaps it on edits, so a text
// change arrives over the HMR WebSocket without a full reload.
import "./style.css";
import { message } from "./message.js";

function render(text) {
  document.getElementById("title").textContent = text;
}

render(message);

if (import.meta.hot) {
  import.meta.hot.accept("./message.js", (next) => {
    if (next) render(next.message);
  });
}
