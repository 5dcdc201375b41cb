// Draws the ```mermaid blocks (the introduction's picture) with mermaid.js from a CDN.
// Offline, or if the script cannot load, the diagram's source stays as it is: readable.
(function () {
    const blocks = document.querySelectorAll("code.language-mermaid");
    if (blocks.length === 0) return;
    const script = document.createElement("script");
    script.src = "https://cdn.jsdelivr.net/npm/mermaid@11/dist/mermaid.min.js";
    script.onload = function () {
        const dark = ["coal", "navy", "ayu"].some((t) => document.documentElement.classList.contains(t));
        mermaid.initialize({ startOnLoad: false, theme: dark ? "dark" : "default" });
        blocks.forEach(function (code) {
            const div = document.createElement("div");
            div.className = "mermaid";
            div.textContent = code.textContent;
            code.parentElement.replaceWith(div);
        });
        mermaid.run();
    };
    document.head.appendChild(script);
})();
