//! The words of the hosted pages in each built-in language. `{product}` and `{email}` are
//! filled in before rendering (the templates escape everything).

/// The languages the hosted pages speak, the first being the fallback.
pub const LANGUAGES: [&str; 4] = ["en", "fr", "de", "es"];

/// The first of `wanted` (language tags, best first) that the pages speak.
pub fn choose<'a>(wanted: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    wanted.into_iter().find_map(|tag| {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        LANGUAGES.iter().find(|l| **l == primary).copied()
    })
}

/// The languages of an `Accept-Language` header, best first (`q=0` dropped).
pub fn accept_language(header: &str) -> Vec<&str> {
    let mut tags: Vec<(&str, f32)> = header
        .split(',')
        .filter_map(|part| {
            let mut bits = part.split(';');
            let tag = bits.next()?.trim();
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!tag.is_empty() && q > 0.0).then_some((tag, q))
        })
        .collect();
    tags.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    tags.into_iter().map(|(t, _)| t).collect()
}

pub fn strings(lang: &str) -> &'static [(&'static str, &'static str)] {
    match lang {
        "fr" => FR,
        "de" => DE,
        "es" => ES,
        _ => EN,
    }
}

const EN: &[(&str, &str)] = &[
    ("email_title", "Sign in to {product}"),
    ("email_intro", "Enter your e-mail address. We will send you a link and a code to sign in."),
    ("email_label", "E-mail address"),
    ("email_button", "Continue"),
    ("email_invalid", "Enter a valid e-mail address."),
    ("wait_title", "Check your e-mail"),
    (
        "wait_intro",
        "We sent a sign-in link and a 6-digit code to {email}. Open the link, or type the code here.",
    ),
    ("wait_number", "Opening the link on another device? You will be asked to pick this number there:"),
    ("number_label", "Number to pick:"),
    ("code_label", "6-digit code from the e-mail"),
    ("code_button", "Sign in"),
    ("code_wrong", "That code is not right. Check the e-mail and try again."),
    ("check_again", "I opened the link: check again"),
    ("wait_live", "This page goes on by itself once the link is used."),
    ("same_title", "Sign in to {product}"),
    ("same_intro", "You are signing in as {email}."),
    ("same_button", "Continue to {product}"),
    ("not_you", "If you did not ask to sign in, close this page."),
    ("approve_title", "Approve the sign-in to {product}?"),
    ("approve_intro", "Someone asked to sign in to {product} as {email} in another browser."),
    ("approve_when", "Asked at"),
    ("approve_browser", "Browser"),
    ("approve_ip", "IP address"),
    ("approve_pick", "If it was you, pick the number shown on the screen that is signing in:"),
    ("decline_button", "It was not me: decline"),
    ("approve_note", "Approving signs in the other browser, not this one."),
    ("approved_title", "Sign-in approved"),
    ("approved_body", "The other browser goes on to {product}. You can close this page."),
    ("declined_title", "Sign-in declined"),
    ("declined_body", "This sign-in to {product} was declined. Nobody was signed in."),
    ("cancelled_title", "Sign-in cancelled"),
    ("cancelled_body", "A number that did not match was picked, so this sign-in to {product} was cancelled."),
    ("expired_title", "This sign-in has expired"),
    ("expired_body", "Sign-in links and codes work for a limited time. Start again from {product}."),
    ("used_title", "This sign-in was already used"),
    ("used_body", "Each sign-in link and code works once. Start again from {product} if you need to."),
    ("start_again", "Start again"),
    ("error_title", "This sign-in cannot start"),
    (
        "error_body",
        "The application that sent you here is not known, or asked to come back to an address it did not register. Go back to the application and try again.",
    ),
    ("signed_out_title", "You are signed out"),
    ("signed_out_body", "You can close this page."),
    ("try_later_title", "Try again in a moment"),
    ("try_later_body", "Too many sign-in e-mails were asked for. Wait a little and try again."),
];

const FR: &[(&str, &str)] = &[
    ("email_title", "Connexion à {product}"),
    (
        "email_intro",
        "Saisissez votre adresse e-mail. Nous vous enverrons un lien et un code pour vous connecter.",
    ),
    ("email_label", "Adresse e-mail"),
    ("email_button", "Continuer"),
    ("email_invalid", "Saisissez une adresse e-mail valide."),
    ("wait_title", "Consultez vos e-mails"),
    (
        "wait_intro",
        "Nous avons envoyé un lien de connexion et un code à 6 chiffres à {email}. Ouvrez le lien ou saisissez le code ici.",
    ),
    (
        "wait_number",
        "Vous ouvrez le lien sur un autre appareil ? Il vous sera demandé d’y choisir ce nombre :",
    ),
    ("number_label", "Nombre à choisir :"),
    ("code_label", "Code à 6 chiffres reçu par e-mail"),
    ("code_button", "Se connecter"),
    ("code_wrong", "Ce code n’est pas le bon. Vérifiez l’e-mail et réessayez."),
    ("check_again", "J’ai ouvert le lien : vérifier à nouveau"),
    ("wait_live", "Cette page continue d’elle-même dès que le lien est utilisé."),
    ("same_title", "Connexion à {product}"),
    ("same_intro", "Vous vous connectez en tant que {email}."),
    ("same_button", "Continuer vers {product}"),
    ("not_you", "Si vous n’avez pas demandé à vous connecter, fermez cette page."),
    ("approve_title", "Approuver la connexion à {product} ?"),
    (
        "approve_intro",
        "Quelqu’un a demandé à se connecter à {product} en tant que {email} dans un autre navigateur.",
    ),
    ("approve_when", "Demandé à"),
    ("approve_browser", "Navigateur"),
    ("approve_ip", "Adresse IP"),
    ("approve_pick", "Si c’était vous, choisissez le nombre affiché sur l’écran qui se connecte :"),
    ("decline_button", "Ce n’était pas moi : refuser"),
    ("approve_note", "Approuver connecte l’autre navigateur, pas celui-ci."),
    ("approved_title", "Connexion approuvée"),
    ("approved_body", "L’autre navigateur continue vers {product}. Vous pouvez fermer cette page."),
    ("declined_title", "Connexion refusée"),
    ("declined_body", "Cette connexion à {product} a été refusée. Personne n’a été connecté."),
    ("cancelled_title", "Connexion annulée"),
    (
        "cancelled_body",
        "Un nombre qui ne correspondait pas a été choisi : cette connexion à {product} est annulée.",
    ),
    ("expired_title", "Cette connexion a expiré"),
    ("expired_body", "Les liens et codes de connexion ont une durée limitée. Recommencez depuis {product}."),
    ("used_title", "Cette connexion a déjà été utilisée"),
    ("used_body", "Chaque lien et code ne sert qu’une fois. Recommencez depuis {product} si besoin."),
    ("start_again", "Recommencer"),
    ("error_title", "Cette connexion ne peut pas commencer"),
    (
        "error_body",
        "L’application qui vous a envoyé ici est inconnue, ou a demandé un retour vers une adresse qu’elle n’a pas enregistrée. Revenez à l’application et réessayez.",
    ),
    ("signed_out_title", "Vous êtes déconnecté"),
    ("signed_out_body", "Vous pouvez fermer cette page."),
    ("try_later_title", "Réessayez dans un instant"),
    ("try_later_body", "Trop d’e-mails de connexion ont été demandés. Patientez un peu et réessayez."),
];

const DE: &[(&str, &str)] = &[
    ("email_title", "Bei {product} anmelden"),
    (
        "email_intro",
        "Geben Sie Ihre E-Mail-Adresse ein. Wir senden Ihnen einen Link und einen Code zur Anmeldung.",
    ),
    ("email_label", "E-Mail-Adresse"),
    ("email_button", "Weiter"),
    ("email_invalid", "Geben Sie eine gültige E-Mail-Adresse ein."),
    ("wait_title", "Prüfen Sie Ihre E-Mails"),
    (
        "wait_intro",
        "Wir haben einen Anmeldelink und einen 6-stelligen Code an {email} gesendet. Öffnen Sie den Link oder geben Sie den Code hier ein.",
    ),
    (
        "wait_number",
        "Öffnen Sie den Link auf einem anderen Gerät? Dort werden Sie gebeten, diese Zahl zu wählen:",
    ),
    ("number_label", "Zu wählende Zahl:"),
    ("code_label", "6-stelliger Code aus der E-Mail"),
    ("code_button", "Anmelden"),
    ("code_wrong", "Dieser Code stimmt nicht. Prüfen Sie die E-Mail und versuchen Sie es erneut."),
    ("check_again", "Ich habe den Link geöffnet: erneut prüfen"),
    ("wait_live", "Diese Seite geht von selbst weiter, sobald der Link benutzt wurde."),
    ("same_title", "Bei {product} anmelden"),
    ("same_intro", "Sie melden sich als {email} an."),
    ("same_button", "Weiter zu {product}"),
    ("not_you", "Wenn Sie keine Anmeldung angefordert haben, schließen Sie diese Seite."),
    ("approve_title", "Anmeldung bei {product} bestätigen?"),
    ("approve_intro", "Jemand möchte sich in einem anderen Browser als {email} bei {product} anmelden."),
    ("approve_when", "Angefordert um"),
    ("approve_browser", "Browser"),
    ("approve_ip", "IP-Adresse"),
    ("approve_pick", "Wenn Sie es waren, wählen Sie die Zahl, die auf dem anmeldenden Bildschirm steht:"),
    ("decline_button", "Das war ich nicht: ablehnen"),
    ("approve_note", "Die Bestätigung meldet den anderen Browser an, nicht diesen."),
    ("approved_title", "Anmeldung bestätigt"),
    ("approved_body", "Der andere Browser geht weiter zu {product}. Sie können diese Seite schließen."),
    ("declined_title", "Anmeldung abgelehnt"),
    ("declined_body", "Diese Anmeldung bei {product} wurde abgelehnt. Niemand wurde angemeldet."),
    ("cancelled_title", "Anmeldung abgebrochen"),
    (
        "cancelled_body",
        "Es wurde eine falsche Zahl gewählt, daher wurde diese Anmeldung bei {product} abgebrochen.",
    ),
    ("expired_title", "Diese Anmeldung ist abgelaufen"),
    ("expired_body", "Anmeldelinks und Codes gelten nur begrenzt. Beginnen Sie erneut bei {product}."),
    ("used_title", "Diese Anmeldung wurde bereits benutzt"),
    (
        "used_body",
        "Jeder Anmeldelink und Code funktioniert nur einmal. Beginnen Sie bei Bedarf erneut bei {product}.",
    ),
    ("start_again", "Erneut beginnen"),
    ("error_title", "Diese Anmeldung kann nicht beginnen"),
    (
        "error_body",
        "Die Anwendung, die Sie hierher geschickt hat, ist unbekannt oder wollte zu einer nicht registrierten Adresse zurück. Gehen Sie zurück zur Anwendung und versuchen Sie es erneut.",
    ),
    ("signed_out_title", "Sie sind abgemeldet"),
    ("signed_out_body", "Sie können diese Seite schließen."),
    ("try_later_title", "Versuchen Sie es gleich noch einmal"),
    (
        "try_later_body",
        "Es wurden zu viele Anmelde-E-Mails angefordert. Warten Sie kurz und versuchen Sie es erneut.",
    ),
];

const ES: &[(&str, &str)] = &[
    ("email_title", "Iniciar sesión en {product}"),
    (
        "email_intro",
        "Introduce tu dirección de correo. Te enviaremos un enlace y un código para iniciar sesión.",
    ),
    ("email_label", "Dirección de correo electrónico"),
    ("email_button", "Continuar"),
    ("email_invalid", "Introduce una dirección de correo válida."),
    ("wait_title", "Revisa tu correo"),
    (
        "wait_intro",
        "Hemos enviado un enlace de inicio de sesión y un código de 6 dígitos a {email}. Abre el enlace o escribe el código aquí.",
    ),
    ("wait_number", "¿Abres el enlace en otro dispositivo? Allí se te pedirá que elijas este número:"),
    ("number_label", "Número que elegir:"),
    ("code_label", "Código de 6 dígitos del correo"),
    ("code_button", "Iniciar sesión"),
    ("code_wrong", "Ese código no es correcto. Revisa el correo e inténtalo de nuevo."),
    ("check_again", "He abierto el enlace: comprobar de nuevo"),
    ("wait_live", "Esta página continúa sola en cuanto se use el enlace."),
    ("same_title", "Iniciar sesión en {product}"),
    ("same_intro", "Vas a iniciar sesión como {email}."),
    ("same_button", "Continuar a {product}"),
    ("not_you", "Si no pediste iniciar sesión, cierra esta página."),
    ("approve_title", "¿Aprobar el inicio de sesión en {product}?"),
    ("approve_intro", "Alguien pidió iniciar sesión en {product} como {email} en otro navegador."),
    ("approve_when", "Pedido a las"),
    ("approve_browser", "Navegador"),
    ("approve_ip", "Dirección IP"),
    ("approve_pick", "Si fuiste tú, elige el número que aparece en la pantalla que inicia sesión:"),
    ("decline_button", "No fui yo: rechazar"),
    ("approve_note", "Aprobar inicia sesión en el otro navegador, no en este."),
    ("approved_title", "Inicio de sesión aprobado"),
    ("approved_body", "El otro navegador continúa a {product}. Puedes cerrar esta página."),
    ("declined_title", "Inicio de sesión rechazado"),
    ("declined_body", "Este inicio de sesión en {product} fue rechazado. No se inició ninguna sesión."),
    ("cancelled_title", "Inicio de sesión cancelado"),
    (
        "cancelled_body",
        "Se eligió un número que no coincidía, así que este inicio de sesión en {product} se canceló.",
    ),
    ("expired_title", "Este inicio de sesión ha caducado"),
    ("expired_body", "Los enlaces y códigos tienen un tiempo limitado. Empieza de nuevo desde {product}."),
    ("used_title", "Este inicio de sesión ya se usó"),
    (
        "used_body",
        "Cada enlace y código funciona una sola vez. Empieza de nuevo desde {product} si lo necesitas.",
    ),
    ("start_again", "Empezar de nuevo"),
    ("error_title", "Este inicio de sesión no puede empezar"),
    (
        "error_body",
        "La aplicación que te envió aquí no es conocida, o pidió volver a una dirección que no registró. Vuelve a la aplicación e inténtalo de nuevo.",
    ),
    ("signed_out_title", "Has cerrado la sesión"),
    ("signed_out_body", "Puedes cerrar esta página."),
    ("try_later_title", "Inténtalo de nuevo en un momento"),
    (
        "try_later_body",
        "Se pidieron demasiados correos de inicio de sesión. Espera un poco e inténtalo de nuevo.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_key() {
        let keys: Vec<&str> = EN.iter().map(|(k, _)| *k).collect();
        for table in [FR, DE, ES] {
            let other: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, other);
        }
    }

    #[test]
    fn chooses_by_primary_tag_in_order() {
        assert_eq!(choose(["pt-BR", "de-CH", "fr"]), Some("de"));
        assert_eq!(choose(accept_language("it;q=0.9, es;q=0.8, en;q=0.1")), Some("es"));
        assert_eq!(choose(accept_language("fr;q=0, en")), Some("en"));
        assert_eq!(choose(["it"]), None);
    }
}
