// A region that scrolls sideways (a wide table or code block) can be reached and scrolled
// with the keyboard: it takes focus and is named for screen readers (WCAG 2.1.1).
function focusableScrollers() {
  document.querySelectorAll(".md-typeset table, .md-typeset__table, .md-typeset__scrollwrap, "
                            + ".md-typeset pre > code").forEach(function (el) {
    if (el.scrollWidth > el.clientWidth + 1 && !el.hasAttribute("tabindex")) {
      el.setAttribute("tabindex", "0");
      if (!el.hasAttribute("aria-label") && el.tagName !== "CODE") {
        el.setAttribute("role", "region");
        el.setAttribute("aria-label", "scrollable table");
      }
    }
  });
}
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", focusableScrollers);
} else {
  focusableScrollers();
}
window.addEventListener("resize", focusableScrollers);
