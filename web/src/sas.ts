// French names of the SAS emoji (Client-Server API, "SAS method: emoji"):
// the SDK gives the spec's English names; both sides show the same emoji,
// so a translation only changes the caption. Written here for Conclave.
const fr: Record<string, string> = {
    Dog: "Chien", Cat: "Chat", Lion: "Lion", Horse: "Cheval", Unicorn: "Licorne", Pig: "Cochon",
    Elephant: "Éléphant", Rabbit: "Lapin", Panda: "Panda", Rooster: "Coq", Penguin: "Manchot", Turtle: "Tortue",
    Fish: "Poisson", Octopus: "Pieuvre", Butterfly: "Papillon", Flower: "Fleur", Tree: "Arbre", Cactus: "Cactus",
    Mushroom: "Champignon", Globe: "Globe", Moon: "Lune", Cloud: "Nuage", Fire: "Feu", Banana: "Banane",
    Apple: "Pomme", Strawberry: "Fraise", Corn: "Maïs", Pizza: "Pizza", Cake: "Gâteau", Heart: "Cœur",
    Smiley: "Sourire", Robot: "Robot", Hat: "Chapeau", Glasses: "Lunettes", Spanner: "Clé à molette",
    Santa: "Père Noël", "Thumbs Up": "Pouce levé", Umbrella: "Parapluie", Hourglass: "Sablier", Clock: "Réveil",
    Gift: "Cadeau", "Light Bulb": "Ampoule", Book: "Livre", Pencil: "Crayon", Paperclip: "Trombone",
    Scissors: "Ciseaux", Lock: "Cadenas", Key: "Clé", Hammer: "Marteau", Telephone: "Téléphone", Flag: "Drapeau",
    Train: "Train", Bicycle: "Vélo", Aeroplane: "Avion", Rocket: "Fusée", Trophy: "Trophée", Ball: "Ballon",
    Guitar: "Guitare", Trumpet: "Trompette", Bell: "Cloche", Anchor: "Ancre", Headphones: "Casque",
    Folder: "Dossier", Pin: "Punaise",
};

export function emojiName(english: string, lang: string): string {
    return lang === "fr" ? (fr[english] ?? english) : english;
}
