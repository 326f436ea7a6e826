// One trial: reveal both photos together once decoded, hide them after show-ms, time the answer from the reveal.
(function () {
  const stage = document.getElementById("stage");
  const status = document.getElementById("status");
  const form = document.getElementById("answer");
  const buttons = [document.getElementById("choose-left"), document.getElementById("choose-right")];
  const images = [document.getElementById("image-left"), document.getElementById("image-right")];
  const showMs = Number(stage.dataset.showMs);
  let shownAt = null;

  function choose(side) {
    if (shownAt === null) return;
    document.getElementById("chosen-side").value = side;
    document.getElementById("response-ms").value = Math.round(performance.now() - shownAt);
    shownAt = null; // one answer per trial, even on a double click
    buttons.forEach((button) => { button.disabled = true; });
    form.submit();
  }

  // Waiting for decoding keeps the exposure the same whatever the network or image size.
  Promise.all(images.map((image) => image.decode())).then(() => {
    stage.classList.remove("loading");
    status.textContent = "";
    shownAt = performance.now();
    buttons.forEach((button) => { button.disabled = false; });
    setTimeout(() => { stage.classList.add("hidden"); }, showMs);
  }, () => {
    status.textContent = "A photo failed to load: please reload the page.";
  });

  buttons.forEach((button) => button.addEventListener("click", () => choose(button.dataset.side)));
  document.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") choose("left");
    if (event.key === "ArrowRight") choose("right");
  });
})();
