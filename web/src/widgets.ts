// Small pieces shared by the screens.
import { h } from "./dom";
import { t, languages, currentLang, setLang, type Lang } from "./i18n";

// languagePicker is a labelled select that switches between French and
// English; onChange redraws the screen.
export function languagePicker(onChange: () => void): HTMLElement {
    const id = "lang-" + Math.random().toString(36).slice(2, 8);
    const select = h(
        "select",
        {
            id,
            onchange: (e: Event) => {
                setLang((e.target as HTMLSelectElement).value as Lang);
                onChange();
            },
        },
        Object.entries(languages).map(([code, name]) => h("option", { value: code, selected: code === currentLang() }, name)),
    );
    return h("span", { className: "lang" }, h("label", { for: id }, t("language")), " ", select);
}

