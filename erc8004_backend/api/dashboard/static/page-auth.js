// Sign in (POST auth/session: the server sets the session cookies) and sign up.
import { api } from "./api.js";
import { h } from "./dom.js";
import { field, form, input, onSubmit } from "./forms.js";

export function signInPage(body, { go, signedIn }) {
  const username = input({ name: "username", autocomplete: "username", required: true });
  const password = input({ name: "password", type: "password",
    autocomplete: "current-password", required: true });
  const signIn = form({ "aria-label": "Sign in" },
    field("Username or email", username, { path: "username" }),
    field("Password", password, { path: "password" }),
    h("button", { type: "submit" }, "Sign in"));
  onSubmit(signIn, async () => {
    await api("POST", "auth/session",
      { body: { username: username.value, password: password.value }, quiet401: true });
    await signedIn();
    go("/status");
  });
  body.append(signIn, h("p", {}, "No account yet? ", h("a", { href: "#/sign-up" }, "Sign up")));
  username.focus();
}

export function signUpPage(body, { go, signedIn }) {
  const username = input({ name: "username", autocomplete: "username", required: true });
  const email = input({ name: "email", type: "email", autocomplete: "email", required: true });
  const password = input({ name: "password", type: "password",
    autocomplete: "new-password", required: true });
  const signUp = form({ "aria-label": "Sign up" },
    field("Username", username, { path: "username",
      hint: "3 to 64 letters, digits, dots, dashes or underscores." }),
    field("Email", email, { path: "email" }),
    field("Password", password, { path: "password",
      hint: "At least 8 characters other than spaces." }),
    h("button", { type: "submit" }, "Sign up"));
  onSubmit(signUp, async () => {
    await api("POST", "auth/register",
      { body: { username: username.value, email: email.value, password: password.value } });
    await api("POST", "auth/session",
      { body: { username: username.value, password: password.value } });
    await signedIn();
    go("/status");
  });
  body.append(signUp, h("p", {}, "Have an account? ", h("a", { href: "#/sign-in" }, "Sign in")));
}
