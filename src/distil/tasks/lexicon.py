"""The word tables behind the instruct task families (`distil.tasks.instruct`).

Plain English and general knowledge, written for these families: where a question has more
than one right answer, the table gives them all, separated by "|", the first being the
reference answer. Items whose answer is disputed or has several official forms (a country
with two official languages, a verb with two past forms) are left out rather than graded
one way.
"""

# fmt: off
PLURALS = {
    "cat": "cats", "dog": "dogs", "book": "books", "car": "cars", "tree": "trees",
    "bird": "birds", "house": "houses", "apple": "apples", "table": "tables", "chair": "chairs",
    "girl": "girls", "boy": "boys", "day": "days", "key": "keys", "toy": "toys", "pen": "pens",
    "hand": "hands", "egg": "eggs", "river": "rivers", "star": "stars", "cup": "cups",
    "door": "doors", "window": "windows", "flower": "flowers", "friend": "friends",
    "horse": "horses", "train": "trains", "road": "roads", "song": "songs", "ship": "ships",
    "box": "boxes", "bus": "buses", "fox": "foxes", "dish": "dishes", "church": "churches",
    "glass": "glasses", "watch": "watches", "brush": "brushes", "class": "classes",
    "kiss": "kisses", "beach": "beaches", "bench": "benches", "dress": "dresses",
    "lunch": "lunches", "match": "matches", "wish": "wishes", "city": "cities",
    "baby": "babies", "story": "stories", "party": "parties", "lady": "ladies",
    "family": "families", "country": "countries", "cherry": "cherries", "body": "bodies",
    "puppy": "puppies", "berry": "berries", "knife": "knives", "leaf": "leaves",
    "wolf": "wolves", "life": "lives", "wife": "wives", "half": "halves", "loaf": "loaves",
    "shelf": "shelves", "calf": "calves", "thief": "thieves", "potato": "potatoes",
    "tomato": "tomatoes", "hero": "heroes", "echo": "echoes", "photo": "photos",
    "piano": "pianos", "radio": "radios", "zoo": "zoos", "child": "children", "mouse": "mice",
    "foot": "feet", "tooth": "teeth", "man": "men", "woman": "women", "goose": "geese",
    "ox": "oxen",
}
"""Singular -> plural. Nouns whose plural is the singular (sheep) or has two forms (fish,
cactus, person) are left out."""

PAST_TENSES = {
    "walk": "walked", "play": "played", "jump": "jumped", "cook": "cooked", "open": "opened",
    "clean": "cleaned", "dance": "danced", "smile": "smiled", "carry": "carried",
    "study": "studied", "talk": "talked", "help": "helped", "listen": "listened",
    "start": "started", "stop": "stopped", "plan": "planned", "cry": "cried", "try": "tried",
    "live": "lived", "love": "loved", "move": "moved", "need": "needed", "want": "wanted",
    "wash": "washed", "climb": "climbed", "laugh": "laughed", "call": "called", "ask": "asked",
    "look": "looked", "visit": "visited",
    "go": "went", "eat": "ate", "see": "saw", "buy": "bought", "think": "thought",
    "sleep": "slept", "make": "made", "fly": "flew", "know": "knew", "sit": "sat",
    "find": "found", "come": "came", "give": "gave", "run": "ran", "write": "wrote",
    "drink": "drank", "swim": "swam", "begin": "began", "speak": "spoke", "take": "took",
    "sing": "sang", "drive": "drove", "bring": "brought", "catch": "caught", "teach": "taught",
    "feel": "felt", "keep": "kept", "leave": "left", "meet": "met", "sell": "sold",
    "tell": "told", "stand": "stood", "win": "won", "lose": "lost", "ride": "rode",
    "throw": "threw", "grow": "grew", "draw": "drew", "break": "broke", "choose": "chose",
    "forget": "forgot", "wear": "wore", "hold": "held", "hear": "heard", "pay": "paid",
    "say": "said", "send": "sent", "build": "built", "spend": "spent",
}
"""Verb -> simple past. Verbs whose past is the verb itself (cut, read) or has two forms
(dream, learn) are left out."""

PAST_PARTICIPLES = {
    "go": "gone", "eat": "eaten", "see": "seen", "fly": "flown", "know": "known",
    "give": "given", "write": "written", "drink": "drunk", "swim": "swum", "begin": "begun",
    "speak": "spoken", "take": "taken", "sing": "sung", "drive": "driven", "ride": "ridden",
    "throw": "thrown", "grow": "grown", "draw": "drawn", "break": "broken", "choose": "chosen",
    "forget": "forgotten", "wear": "worn",
}
"""Verb -> past participle, where it differs from the simple past and the verb: a wrong
answer to "the past tense of go" ("gone")."""

OPPOSITES = {
    "hot": "cold", "cold": "hot", "big": "small|little", "small": "big|large", "large": "small",
    "fast": "slow", "slow": "fast|quick", "happy": "sad|unhappy", "sad": "happy", "old": "young|new",
    "young": "old", "new": "old", "tall": "short", "long": "short", "open": "closed|shut",
    "closed": "open", "hard": "soft|easy", "soft": "hard|loud", "easy": "hard|difficult",
    "difficult": "easy", "rich": "poor", "poor": "rich", "wet": "dry", "dry": "wet",
    "early": "late", "late": "early", "full": "empty", "empty": "full", "thick": "thin",
    "thin": "thick|fat", "strong": "weak", "weak": "strong", "loud": "quiet|soft",
    "quiet": "loud|noisy", "clean": "dirty", "dirty": "clean", "good": "bad|evil", "bad": "good",
    "high": "low", "low": "high", "cheap": "expensive", "expensive": "cheap",
    "heavy": "light", "light": "dark|heavy", "dark": "light|bright", "near": "far|distant",
    "far": "near|close", "day": "night", "night": "day", "true": "false", "false": "true",
    "love": "hate", "hate": "love", "push": "pull", "pull": "push", "black": "white",
    "white": "black", "sweet": "sour|bitter", "alive": "dead", "dead": "alive",
    "asleep": "awake", "awake": "asleep", "wide": "narrow", "narrow": "wide",
    "deep": "shallow", "shallow": "deep", "rough": "smooth", "smooth": "rough",
    "loose": "tight", "tight": "loose", "brave": "cowardly|afraid|scared", "friend": "enemy|foe",
    "enemy": "friend|ally", "win": "lose", "buy": "sell", "sell": "buy", "north": "south",
    "south": "north", "east": "west", "west": "east", "winter": "summer",
    "summer": "winter",
}
"""Word -> its opposites. No small function words (in, up, on): they turn up in any answer."""

CAPITAL_CITIES = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Greece": "Athens", "Ireland": "Dublin", "Austria": "Vienna",
    "Poland": "Warsaw", "Hungary": "Budapest", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Russia": "Moscow", "Egypt": "Cairo",
    "Kenya": "Nairobi", "Japan": "Tokyo", "China": "Beijing", "South Korea": "Seoul",
    "Thailand": "Bangkok", "India": "New Delhi|Delhi", "Indonesia": "Jakarta", "Iran": "Tehran",
    "Iraq": "Baghdad", "Canada": "Ottawa", "Mexico": "Mexico City", "Cuba": "Havana",
    "Peru": "Lima", "Chile": "Santiago", "Argentina": "Buenos Aires", "Brazil": "Brasilia",
    "Colombia": "Bogota", "Australia": "Canberra", "New Zealand": "Wellington",
    "England": "London", "the United States": "Washington", "the Netherlands": "Amsterdam",
    "Belgium": "Brussels", "the Czech Republic": "Prague", "Turkey": "Ankara",
    "Ukraine": "Kyiv|Kiev", "the Philippines": "Manila", "Vietnam": "Hanoi",
    "Saudi Arabia": "Riyadh", "Nigeria": "Abuja", "Morocco": "Rabat", "Scotland": "Edinburgh",
}
"""Well-known country -> capital city."""

NOT_CAPITALS = (
    "Sydney", "Melbourne", "Toronto", "Montreal", "Vancouver", "Istanbul", "Rio de Janeiro",
    "Sao Paulo", "New York", "Los Angeles", "Chicago", "Mumbai", "Shanghai", "Barcelona",
    "Milan", "Zurich", "Geneva", "Munich", "Hamburg", "Osaka", "Kyoto", "Lagos", "Casablanca",
    "Auckland", "Petersburg", "Alexandria", "Ho Chi Minh City", "Karachi", "Dubai",
    "Johannesburg", "Cape Town", "Krakow", "Glasgow", "Manchester", "Porto", "Seville",
)
"""Large cities that are not capitals: naming one is a wrong answer, as naming a wrong capital is."""

LANGUAGES = {
    "France": "French", "Germany": "German", "Austria": "German", "Italy": "Italian",
    "Spain": "Spanish", "Mexico": "Spanish", "Argentina": "Spanish", "Colombia": "Spanish",
    "Peru": "Spanish", "Chile": "Spanish", "Cuba": "Spanish", "Portugal": "Portuguese",
    "Brazil": "Portuguese", "Japan": "Japanese", "China": "Chinese|Mandarin", "Russia": "Russian",
    "Greece": "Greek", "the Netherlands": "Dutch", "Poland": "Polish", "Sweden": "Swedish",
    "Norway": "Norwegian", "Denmark": "Danish", "Turkey": "Turkish", "Thailand": "Thai",
    "Vietnam": "Vietnamese", "Egypt": "Arabic", "Saudi Arabia": "Arabic", "Jordan": "Arabic",
    "Hungary": "Hungarian", "South Korea": "Korean", "Iran": "Persian|Farsi",
    "England": "English", "the United States": "English", "Australia": "English",
    "Ukraine": "Ukrainian", "Czechia": "Czech", "Romania": "Romanian",
    "Iceland": "Icelandic", "Croatia": "Croatian", "Bulgaria": "Bulgarian",
}
"""Country -> its main language. Countries with several main languages (Canada, Switzerland,
India, Finland) are left out."""

CONTINENTS = {
    **dict.fromkeys(("France", "Germany", "Italy", "Spain", "Portugal", "Poland", "Norway",
                     "Sweden", "Finland", "Ireland", "Greece", "Austria", "Hungary", "Belgium",
                     "the Netherlands", "Switzerland", "Denmark", "Romania", "Ukraine",
                     "the Czech Republic"), "Europe"),
    **dict.fromkeys(("Japan", "China", "India", "Thailand", "Vietnam", "Indonesia",
                     "South Korea", "Nepal", "Pakistan", "Malaysia", "the Philippines",
                     "Mongolia", "Bangladesh", "Iran", "Iraq", "Saudi Arabia"), "Asia"),
    **dict.fromkeys(("Egypt", "Kenya", "Nigeria", "Morocco", "Ghana", "Ethiopia", "Tanzania",
                     "Algeria", "Senegal", "Uganda", "Zimbabwe", "Angola"), "Africa"),
    **dict.fromkeys(("Canada", "Mexico", "the United States"), "North America"),
    **dict.fromkeys(("Brazil", "Argentina", "Peru", "Chile", "Colombia", "Venezuela", "Ecuador",
                     "Bolivia", "Uruguay", "Paraguay"), "South America"),
}
"""Country -> continent. No country that spans two (Russia, Turkey), none named after its
continent (Australia, South Africa), none whose continent is taught two ways (the Caribbean)."""

CONTINENT_NAMES = ("Europe", "Asia", "Africa", "North America", "South America", "Oceania",
                   "Australia", "Antarctica")

OCCUPATIONS = {
    "teaches children at a school": "teacher", "bakes bread and cakes": "baker",
    "flies airplanes": "pilot", "grows crops on a farm": "farmer",
    "puts out fires": "firefighter|fireman", "cuts hair": "hairdresser|barber|hairstylist|stylist",
    "writes books": "writer|author|novelist", "repairs cars": "mechanic",
    "fixes leaking pipes": "plumber", "takes photographs": "photographer",
    "designs buildings": "architect", "works in a library": "librarian",
    "catches fish": "fisherman|fisher", "travels into space": "astronaut|cosmonaut",
    "serves food in a restaurant": "waiter|waitress|server", "sells flowers": "florist",
    "acts in films": "actor|actress", "looks after people's teeth": "dentist",
    "makes things out of wood": "carpenter|woodworker", "studies the stars": "astronomer",
    "cooks meals in a restaurant": "chef|cook", "treats sick animals": "vet|veterinarian",
    "delivers letters": "postman|mailman|mail carrier|postal worker|letter carrier|postwoman",
    "sings songs": "singer", "plays the piano": "pianist", "plays the violin": "violinist",
    "paints pictures": "painter|artist", "looks after a garden": "gardener",
    "catches criminals": "police officer|policeman|policewoman|detective",
    "makes clothes": "tailor|dressmaker|seamstress", "reports the news": "journalist|reporter",
    "sells meat": "butcher", "makes and repairs shoes": "cobbler|shoemaker",
    "fixes electrical wiring": "electrician", "studies plants": "botanist",
    "studies rocks": "geologist", "translates from one language to another": "translator|interpreter",
    "writes computer programs": "programmer|developer|software developer|software engineer|coder",
    "decides cases in a court": "judge", "gives legal advice to clients": "lawyer|attorney|solicitor",
}
"""What a person does -> what such a person is called."""

FIRST_LETTER_WORDS = (
    "banana", "bread", "bottle", "bridge", "butter", "button", "candle", "carpet", "castle",
    "cloud", "coffee", "cotton", "dinner", "doctor", "dragon", "dream", "eagle", "earth",
    "engine", "evening", "fabric", "farmer", "feather", "finger", "forest", "garden", "ghost",
    "giant", "glove", "grass", "guitar", "hammer", "harbor", "heart", "honey", "hotel",
    "jacket", "jelly", "jungle", "kettle", "kitchen", "kitten", "ladder", "lemon", "letter",
    "lion", "magnet", "market", "meadow", "mirror", "monkey", "morning", "mountain", "needle",
    "night", "number", "ocean", "olive", "onion", "orange", "paper", "parrot", "pencil",
    "pepper", "pillow", "planet", "pocket", "puzzle", "queen", "question", "rabbit", "rainbow",
    "river", "rocket", "salad", "sand", "shadow", "silver", "spoon", "summer", "table",
    "teacher", "thunder", "tiger", "tomato", "tower", "turtle", "umbrella", "uncle", "valley",
    "velvet", "village", "violin", "wagon", "water", "window", "winter", "wolf", "yellow",
    "yogurt", "zebra", "zipper", "basket", "blanket", "candy", "cheese", "circle", "dolphin",
    "donkey", "elbow", "feast", "flower", "frog", "goat", "gold", "horse", "house", "jewel",
    "judge", "kite", "lamp", "leaf", "marble", "melon", "nest", "noodle", "owl", "oven",
    "pirate", "quilt", "robot", "ruler", "saddle", "snake", "sugar", "ticket", "train",
    "unicorn", "vase", "vest", "whale", "wheel", "yard", "yarn", "zero", "bucket", "cabin",
    "desk", "drum", "egg", "fence", "fish", "grape", "hill", "juice", "king", "lake",
    "moon", "nose", "pear", "quiet", "rope", "ship", "tent", "urn", "voice", "wind", "year",
    "zoo", "bell", "coat", "duck", "echo", "farm", "gate", "hat", "jar", "key", "lock", "map",
    "nut", "path", "road", "sock", "toy", "van", "web",
)
"""Common words for `first_letter`; none begins with "a" or "i", which are words themselves."""

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# fmt: on


def number_in_words(n: int) -> str:
    """0 to 99 in English words, tens and ones joined by a hyphen (`number_in_words(76)` is
    "seventy-six")."""
    if not 0 <= n <= 99:
        raise ValueError(f"{n} is outside 0-99")
    tens, ones = divmod(n, 10)
    if n < 20:
        return ONES[n]
    return TENS[tens] if ones == 0 else f"{TENS[tens]}-{ONES[ones]}"
