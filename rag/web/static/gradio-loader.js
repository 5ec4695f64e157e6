// Gradio's <gradio-app> web component, served by this app (rag/web/app.py): nothing from a CDN.
const here = new URL("./", import.meta.url);
const css = "@CSS@";
for (const href of ["./" + css, new URL(css, here.origin + "/").href]) {
  const marker = document.createElement("link");
  marker.rel = "x-gradio-stylesheet";
  marker.setAttribute("href", href);
  document.head.appendChild(marker);
}
const sheet = document.createElement("link");
sheet.rel = "stylesheet";
sheet.href = new URL(css, here).href;
document.head.appendChild(sheet);
import(new URL("@BUNDLE@", here).href);
