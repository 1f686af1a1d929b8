// Labelled form fields, and the API's validation errors shown at the field they name.
//
// A control carries data-field="<the API's path>" (name, conditions.any[0].operator,
// actions[1].config); an error whose `field` is that path, or inside it, is shown under the
// control. Errors that name no control of the form are listed at the top of the form.
import { h } from "./dom.js";

let counter = 0;
const nextId = (prefix) => `${prefix}-${++counter}`;

export function input(props = {}) {
  return h("input", { type: "text", ...props });
}

export function select(options, props = {}) {
  return h("select", props, options.map((option) => {
    const [value, label] = Array.isArray(option) ? option : [option, option];
    return h("option", { value, selected: String(props.value ?? "") === String(value) }, label);
  }));
}

// A control with its label, hint and error message; `path` is the API field it edits.
export function field(label, control, { path, hint } = {}) {
  control.id ||= nextId("f");
  const error = h("p", { class: "field-error", id: `${control.id}-error`, hidden: true });
  const described = [error.id];
  let hintElement = null;
  if (hint) {
    hintElement = h("p", { class: "hint", id: `${control.id}-hint` }, hint);
    described.unshift(hintElement.id);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  control.dataset.errorId = error.id;
  if (path) control.dataset.field = path;
  const checkbox = control.type === "checkbox";
  return h("div", { class: checkbox ? "field checkbox" : "field" },
    checkbox ? [control, h("label", { for: control.id }, label)]
      : [h("label", { for: control.id }, label), control],
    hintElement, error);
}

// A fieldset that errors can name as a whole (a condition, a group, an action).
export function group(legend, path, ...children) {
  const error = h("p", { class: "field-error", id: nextId("g-error"), hidden: true });
  return h("fieldset", { dataset: { field: path, errorId: error.id }, tabindex: "-1" },
    h("legend", {}, legend), error, children);
}

export function form(props, ...children) {
  const alert = h("div", { class: "form-error", role: "alert", hidden: true });
  return h("form", { novalidate: true, ...props }, alert, children);
}

export function clearErrors(formElement) {
  for (const element of formElement.querySelectorAll("[aria-invalid]")) {
    element.removeAttribute("aria-invalid");
  }
  for (const element of formElement.querySelectorAll(".field-error, .form-error")) {
    element.hidden = true;
    element.replaceChildren();
  }
}

// "conditions.any[1].operator" -> "conditions.any[1]" -> "conditions.any" -> "conditions".
function parentPath(path) {
  const cut = Math.max(path.lastIndexOf("."), path.lastIndexOf("["));
  return cut > 0 ? path.slice(0, cut) : "";
}

function controlFor(formElement, path) {
  for (let at = path; at; at = parentPath(at)) {
    const found = formElement.querySelector(`[data-field="${CSS.escape(at)}"]`);
    if (found) return found;
  }
  return null;
}

// Shows `error` (an ApiError, or any Error) on `formElement`: each detail at its control.
export function showErrors(formElement, error) {
  clearErrors(formElement);
  const alert = formElement.querySelector(".form-error");
  const unplaced = [];
  let first = null;
  for (const detail of error.details ?? []) {
    const control = controlFor(formElement, String(detail.field ?? ""));
    const message = document.getElementById(control?.dataset.errorId ?? "");
    if (!control || !message) {
      unplaced.push(`${detail.field}: ${detail.message}`);
      continue;
    }
    control.setAttribute("aria-invalid", "true");
    const exact = control.dataset.field === detail.field;
    message.append(h("span", {}, exact ? detail.message : `${detail.field}: ${detail.message}`));
    message.hidden = false;
    first ??= control;
  }
  const lines = first && !unplaced.length ? ["Correct the fields marked below."]
    : unplaced.length ? unplaced : [error.message];
  alert.replaceChildren(...lines.map((line) => h("p", {}, line)));
  alert.hidden = false;
  if (first) {
    first.focus();
  } else {
    alert.setAttribute("tabindex", "-1");
    alert.focus();
  }
}

// Runs `action` for a submitted form: the submit button is disabled meanwhile, and an error
// is shown on the form.
export function onSubmit(formElement, action) {
  formElement.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = formElement.querySelectorAll("button[type=submit]");
    buttons.forEach((button) => { button.disabled = true; });
    clearErrors(formElement);
    try {
      await action(event);
    } catch (error) {
      showErrors(formElement, error);
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
    }
  });
  return formElement;
}
