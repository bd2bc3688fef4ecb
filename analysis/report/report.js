// The run report's behaviour: draw the figure, and show a clicked point's answers.
// Everything the run recorded (prompts, answers, judges' evidence) is model output, so it is
// only ever set as textContent, never as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var state = { key: null, all: false };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmt(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
  }

  function coordsText(p) {
    return p.coords.map(function (c, i) {
      return "αβ"[i] + " (" + data.dirs[i] + ") = " + (c >= 0 ? "+" : "") + Number(c).toPrecision(4);
    }).join(", ");
  }

  function nearest(x, y) {
    // The clicked point of the run: the one at (or nearest to) the clicked coordinates.
    var best = null, dist = Infinity;
    data.points.forEach(function (p) {
      var d = Math.abs(p.coords[0] - x) + (p.coords.length > 1 ? Math.abs(p.coords[1] - y) : 0);
      if (d < dist) { dist = d; best = p; }
    });
    return best;
  }

  function verdicts(unsafe) {
    var box = el("span", "verdicts");
    data.judges.forEach(function (j) {
      if (!unsafe || !(j in unsafe)) return;
      box.appendChild(el("span", "verdict " + (unsafe[j] ? "unsafe" : "safe"),
        j + ": " + (unsafe[j] ? "unsafe" : "safe")));
    });
    return box;
  }

  function benignCard(g, i) {
    // A utility prompt's answer: never judged for harm; refused (keyword) and, with a
    // reference answer, correct or not.
    var card = el("article", "answer benign " + (g.refused ? "is-unsafe" : "is-safe"));
    var head = el("div", "answer-head");
    head.appendChild(el("span", "answer-n", "utility #" + (i + 1) + (g.sample ? " (sample " + g.sample + ")" : "")));
    var box = el("span", "verdicts");
    box.appendChild(el("span", "verdict " + (g.refused ? "unsafe" : "safe"), g.refused ? "refused" : "answered"));
    if (typeof g.correct === "boolean") {
      box.appendChild(el("span", "verdict " + (g.correct ? "safe" : "unsafe"), g.correct ? "correct" : "wrong"));
    }
    head.appendChild(box);
    card.appendChild(head);
    card.appendChild(el("div", "label", "benign prompt"));
    card.appendChild(el("div", "prompt", g.prompt));
    card.appendChild(el("div", "label", "answer"));
    card.appendChild(el("pre", "text", g.answer));
    return card;
  }

  function utilityText(p) {
    var u = p.utility;
    if (!u) return "";
    var parts = ["utility: " + u.n + " benign prompts, refused " + fmt(u.refused.share, 3)];
    if (u.accuracy) parts.push("accuracy " + fmt(u.accuracy.share, 3));
    return "; " + parts.join(", ");
  }

  function answerCard(g, i) {
    if (g.set === "utility") return benignCard(g, i);
    var first = g.unsafe && g.unsafe[data.judge];
    var card = el("article", "answer " + (first ? "is-unsafe" : "is-safe"));
    var head = el("div", "answer-head");
    head.appendChild(el("span", "answer-n", "#" + (i + 1) + (g.sample ? " (sample " + g.sample + ")" : "")));
    head.appendChild(verdicts(g.unsafe));
    var c = g.coherence;
    if (c && c.outcome) {
      var detail = ["nll", "repeat"].filter(function (k) { return typeof c[k] === "number"; })
        .map(function (k) { return k + " " + c[k].toFixed(3); }).join(", ");
      head.appendChild(el("span", "outcome " + c.outcome, c.outcome + (detail ? " (" + detail + ")" : "")));
    }
    card.appendChild(head);
    card.appendChild(el("div", "label", "prompt"));
    card.appendChild(el("div", "prompt", g.prompt));
    card.appendChild(el("div", "label", "answer"));
    card.appendChild(el("pre", "text", g.answer));
    if (g.evidence) {
      var details = el("details", "evidence");
      details.appendChild(el("summary", null, "judges' evidence"));
      details.appendChild(el("pre", "text", JSON.stringify(g.evidence, null, 1)));
      card.appendChild(details);
    }
    return card;
  }

  function showPoint(key, all) {
    var p = data.points.find(function (q) { return q.key.join(",") === key; });
    if (!p) return;
    state.key = key;
    state.all = !!all;
    document.getElementById("point-select").value = key;
    var gens = data.answers[key] || [];
    if (document.getElementById("only-unsafe").checked) {
      gens = gens.filter(function (g) { return g.unsafe && g.unsafe[data.judge]; });
    }
    var info = document.getElementById("point-info");
    var judges = Object.keys(p.judges || {}).map(function (j) {
      return j + " " + fmt(p.judges[j], 3);
    }).join(", ");
    var o = p.outcomes || {};
    var shares = ["refused", "complied", "incoherent"].filter(function (k) { return o[k]; })
      .map(function (k) { return k + " " + fmt(o[k].share, 3); }).join(", ");
    if (o.asr_coherent) shares += "; ASR among coherent answers " + fmt(o.asr_coherent.asr, 3);
    info.textContent = coordsText(p) + ": ASR " + fmt(p.asr, 3) + " (" + p.n_unsafe + "/" + p.n +
      " unsafe by " + data.judge + "), Wilson 95% [" + fmt(p.lo, 3) + ", " + fmt(p.hi, 3) + "]" +
      (judges ? "; per judge: " + judges : "") + (shares ? "; " + shares : "") + utilityText(p) +
      ". " + gens.length + " answers" + (gens.length ? "" : " (none stored for this point)") + ".";
    var list = document.getElementById("answer-list");
    list.replaceChildren();
    var shown = state.all ? gens : gens.slice(0, data.first_answers);
    shown.forEach(function (g, i) { list.appendChild(answerCard(g, i)); });
    var more = document.getElementById("show-all");
    more.hidden = shown.length >= gens.length;
    more.textContent = "show all " + gens.length + " answers";
  }

  function setUpAnswers() {
    var select = document.getElementById("point-select");
    if (!select) return;
    data.points.forEach(function (p) {
      var opt = el("option", null, coordsText(p) + " — ASR " + fmt(p.asr, 3));
      opt.value = p.key.join(",");
      select.appendChild(opt);
    });
    select.value = "";
    select.addEventListener("change", function () { showPoint(select.value, false); });
    document.getElementById("only-unsafe").addEventListener("change", function () {
      if (state.key !== null) showPoint(state.key, state.all);
    });
    document.getElementById("show-all").addEventListener("click", function () {
      showPoint(state.key, true);
    });
  }

  function onClick(ev) {
    var pt = ev.points && ev.points[0];
    if (!pt || !data.points || pt.data.meta !== "points") return;
    var p = nearest(pt.x, pt.y);
    if (p) {
      showPoint(p.key.join(","), false);
      document.getElementById("answers").scrollIntoView({ block: "nearest" });
    }
  }

  function ready() {
    document.body.setAttribute("data-ready", "1");
  }

  function draw() {
    var div = document.getElementById("plot");
    if (!data.figure || !div) return ready();
    if (typeof Plotly === "undefined") return ready(); // the fallback text stays
    div.replaceChildren();
    Plotly.newPlot(div, data.figure.data, data.figure.layout,
      { responsive: true, displaylogo: false }).then(function (gd) {
      gd.on("plotly_click", onClick);
      ready();
    });
  }

  setUpAnswers();
  window.reportShowPoint = showPoint; // for the keyboard-free tests and the console
  draw();
})();
