// The plan editor's widgets (templates/plans/edit.html).
//
// Task pickers: a task's "Depends on" and an integration point's "Between" are a
// <select multiple data-task-picker="N"> whose only options are the tasks picked (the positions
// the server reads back). Tom Select (static/vendor/tom-select) turns each into a searchable
// multi-select; the tasks it offers are read from the form's id fields when it gets the focus,
// so the page does not carry a list of every task per row, and renamed tasks show their new id.
// N is the row's own task, left out of its offer ("" for none).
//
// Folded fields: a task's "Prompt, output, integration, files" section is sent empty when the
// task has none of them; it is filled from <template id="task-more"> when first opened.
(function () {
  "use strict";

  function taskOptions(exclude) {
    var options = [];
    document.querySelectorAll("#editor input[name$='-id']").forEach(function (input) {
      var match = /^tasks-(\d+)-id$/.exec(input.name);
      if (match && match[1] !== exclude) {
        var position = Number(match[1]);
        options.push({ value: match[1], text: input.value.trim() || "#" + (position + 1), position: position });
      }
    });
    return options;
  }

  function offerTasks(picker, exclude) {
    taskOptions(exclude).forEach(function (option) {
      var known = picker.options[option.value];
      if (!known) picker.addOption(option);
      else if (known.text !== option.text || known.position !== option.position) picker.updateOption(option.value, option);
    });
    picker.refreshOptions(false);
  }

  function makePicker(select) {
    if (select.tomselect) return select.tomselect;
    var exclude = select.dataset.taskPicker;
    return new TomSelect(select, {
      plugins: { remove_button: { title: "Remove this task" } },
      hideSelected: true,
      closeAfterSelect: false,
      clearAfterSelect: true,
      refreshThrottle: 0,  // the tasks are here already: a search typed and Enter picks from it at once
      maxOptions: 100,
      placeholder: "type to search tasks…",
      sortField: [{ field: "$score" }, { field: "position" }],
      onFocus: function () { offerTasks(this, exclude); },
    });
  }

  // Pickers are made when they come near the screen (making 2,000 at once would stall the
  // page), or when one is reached by the keyboard first.
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) { observer.unobserve(entry.target); makePicker(entry.target); }
    });
  }, { rootMargin: "600px 0px" }) : null;

  htmx.onLoad(function (root) {
    if (!root.querySelectorAll) return;
    if (root.id === "editor" && observer) observer.disconnect();  // the form was drawn anew
    root.querySelectorAll("select[data-task-picker]").forEach(function (select) {
      if (observer) observer.observe(select); else makePicker(select);
    });
  });

  document.addEventListener("focusin", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-task-picker]") && !select.tomselect) {
      if (observer) observer.unobserve(select);
      makePicker(select).focus();
    }
  });

  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!details.open || !details.matches || !details.matches("details[data-more]") || details.querySelector("[name]")) return;
    var fields = document.getElementById("task-more").content.cloneNode(true);
    fields.querySelectorAll("[name]").forEach(function (field) {
      field.name = field.name.replace("__n__", details.dataset.more);
    });
    details.appendChild(fields);
  }, true);  // toggle does not bubble
})();
