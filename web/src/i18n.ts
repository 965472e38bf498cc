// French and English strings. The language is the one chosen in the
// switcher (kept in localStorage), else the browser's first language when it
// is French, else English.

const en = {
    appName: "Conclave",
    language: "Language",
    signIn: "Sign in",
    signingIn: "Signing in…",
    register: "Create account",
    registering: "Creating account…",
    haveAccount: "I already have an account",
    noAccount: "Create an account",
    username: "Username",
    password: "Password",
    confirmPassword: "Confirm password",
    passwordsDiffer: "The passwords differ.",
    registrationClosed: "This server does not allow creating accounts here. Ask its administrator.",
    badLogin: "Wrong username or password.",
    networkError: "The server cannot be reached.",
    startingCrypto: "Preparing encryption…",
    syncing: "Loading your conversations…",
    rooms: "Conversations",
    invites: "Invitations",
    accept: "Accept",
    decline: "Decline",
    invitedBy: "Invited by {0}",
    noRooms: "No conversations yet. Start one with the buttons above.",
    newDm: "New message",
    newRoom: "New room",
    joinRoom: "Join",
    userIdToInvite: "User ID (for example @marie:{0})",
    roomName: "Room name",
    roomAddress: "Room address (for example #general:{0})",
    inviteUsers: "Invite (user IDs, separated by commas)",
    create: "Create",
    cancel: "Cancel",
    start: "Start",
    unread: "{0} unread",
    mentions: "{0} mentions",
    encrypted: "Encrypted",
    notEncrypted: "Not encrypted",
    back: "Back to conversations",
    loadOlder: "Load older messages",
    noOlder: "Beginning of the conversation",
    message: "Message",
    send: "Send",
    sending: "Sending…",
    sendFailed: "Not sent",
    logout: "Sign out",
    signedInAs: "Signed in as {0}",
    cannotDecrypt: "Unable to decrypt this message: {0}",
    decrypting: "Decrypting…",
    reasonMissingKey: "the key has not arrived yet (it may arrive later)",
    reasonWithheld: "the sender did not share the key with this session",
    reasonUnverified: "the sender's session is not verified",
    reasonHistorical: "this message was sent before this session existed",
    reasonOther: "{0}",
    joined: "{0} joined",
    left: "{0} left",
    invited: "{0} invited {1}",
    createdRoom: "{0} created the conversation",
    redacted: "Message deleted",
    error: "Something went wrong: {0}",
    selectRoom: "Choose a conversation",
    members: "{0} members",
    timeline: "Messages",
    roomList: "Conversation list",
};
export type Key = keyof typeof en;

const fr: Record<Key, string> = {
    appName: "Conclave",
    language: "Langue",
    signIn: "Se connecter",
    signingIn: "Connexion…",
    register: "Créer un compte",
    registering: "Création du compte…",
    haveAccount: "J’ai déjà un compte",
    noAccount: "Créer un compte",
    username: "Nom d’utilisateur",
    password: "Mot de passe",
    confirmPassword: "Confirmer le mot de passe",
    passwordsDiffer: "Les mots de passe diffèrent.",
    registrationClosed: "Ce serveur ne permet pas de créer un compte ici. Demandez à son administrateur.",
    badLogin: "Nom d’utilisateur ou mot de passe incorrect.",
    networkError: "Le serveur est injoignable.",
    startingCrypto: "Préparation du chiffrement…",
    syncing: "Chargement de vos conversations…",
    rooms: "Conversations",
    invites: "Invitations",
    accept: "Accepter",
    decline: "Refuser",
    invitedBy: "Invitation de {0}",
    noRooms: "Aucune conversation pour l’instant. Commencez-en une avec les boutons ci-dessus.",
    newDm: "Nouveau message",
    newRoom: "Nouveau salon",
    joinRoom: "Rejoindre",
    userIdToInvite: "Identifiant (par exemple @marie:{0})",
    roomName: "Nom du salon",
    roomAddress: "Adresse du salon (par exemple #general:{0})",
    inviteUsers: "Inviter (identifiants séparés par des virgules)",
    create: "Créer",
    cancel: "Annuler",
    start: "Commencer",
    unread: "{0} non lus",
    mentions: "{0} mentions",
    encrypted: "Chiffré",
    notEncrypted: "Non chiffré",
    back: "Retour aux conversations",
    loadOlder: "Charger les messages précédents",
    noOlder: "Début de la conversation",
    message: "Message",
    send: "Envoyer",
    sending: "Envoi…",
    sendFailed: "Non envoyé",
    logout: "Se déconnecter",
    signedInAs: "Connecté en tant que {0}",
    cannotDecrypt: "Impossible de déchiffrer ce message : {0}",
    decrypting: "Déchiffrement…",
    reasonMissingKey: "la clé n’est pas encore arrivée (elle peut arriver plus tard)",
    reasonWithheld: "l’expéditeur n’a pas partagé la clé avec cette session",
    reasonUnverified: "la session de l’expéditeur n’est pas vérifiée",
    reasonHistorical: "ce message a été envoyé avant la création de cette session",
    reasonOther: "{0}",
    joined: "{0} a rejoint la conversation",
    left: "{0} est parti",
    invited: "{0} a invité {1}",
    createdRoom: "{0} a créé la conversation",
    redacted: "Message supprimé",
    error: "Une erreur est survenue : {0}",
    selectRoom: "Choisissez une conversation",
    members: "{0} membres",
    timeline: "Messages",
    roomList: "Liste des conversations",
};

export const languages = { en: "English", fr: "Français" } as const;
export type Lang = keyof typeof languages;
const tables: Record<Lang, Record<Key, string>> = { en, fr };

const stored = localStorage.getItem("conclave.lang");
let lang: Lang =
    stored === "fr" || stored === "en" ? stored : (navigator.language || "en").toLowerCase().startsWith("fr") ? "fr" : "en";

export function currentLang(): Lang {
    return lang;
}

export function setLang(l: Lang): void {
    lang = l;
    localStorage.setItem("conclave.lang", l);
    document.documentElement.lang = l;
}
document.documentElement.lang = lang;

// t returns the string for key with {0}, {1}… replaced by args.
export function t(key: Key, ...args: (string | number)[]): string {
    return tables[lang][key].replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ""));
}
