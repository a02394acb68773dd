(function () {
  "use strict";
  var nav = document.getElementById("filters");
  if (!nav) { return; }
  nav.hidden = false;
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.person"));
  var buttons = Array.prototype.slice.call(nav.querySelectorAll("button[data-filter]"));
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");
  var filter = "all";
  function apply() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var count = 0;
    cards.forEach(function (card) {
      var text = card.getAttribute("data-search") || "";
      var match = words.every(function (w) { return text.indexOf(w) >= 0; });
      if (filter === "problems") {
        match = match && card.getAttribute("data-problem") === "1";
      } else if (filter !== "all") {
        match = match && card.getAttribute("data-statuses").indexOf(" " + filter + " ") >= 0;
      }
      card.classList.toggle("hide", !match);
      var photos = card.querySelectorAll("li.photo");
      for (var i = 0; i < photos.length; i++) {
        var status = photos[i].getAttribute("data-status");
        var other = filter !== "all" && filter !== "problems" && status !== filter;
        photos[i].classList.toggle("hide", other);
      }
      if (match) { count += 1; }
    });
    shown.textContent = count + " of " + cards.length + " persons";
  }
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      filter = button.getAttribute("data-filter");
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      apply();
    });
  });
  search.addEventListener("input", apply);
  apply();
})();
