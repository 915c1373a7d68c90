"""Word lists, sentences and short paragraphs for ``retmask_interp.data.instructions``, all written for this package.

One entry per line of each source string (``_lines``); related strings are written ``a | b`` (``_pairs``). Nothing
here is random: ``instructions`` draws from these lists with a seeded generator. Entries longer than the line limit
are data (paragraphs, reviews), not code.
"""

from __future__ import annotations


def _lines(text: str) -> tuple[str, ...]:
    """Non-empty stripped lines of ``text``, in order, without duplicates (a duplicate is an error)."""
    out = tuple(line.strip() for line in text.strip().splitlines() if line.strip())
    if len(set(out)) != len(out):
        dupes = sorted({x for x in out if out.count(x) > 1})
        raise ValueError(f"duplicate entries in a word list: {dupes}")
    return out


def _pairs(text: str) -> tuple[tuple[str, ...], ...]:
    """Lines of ``text`` split at ``|`` into tuples of stripped parts."""
    return tuple(tuple(part.strip() for part in line.split("|")) for line in _lines(text))


ANIMALS = _lines("""
dog
cat
horse
cow
sheep
goat
pig
rabbit
hamster
parrot
owl
eagle
penguin
dolphin
whale
shark
octopus
jellyfish
turtle
frog
snake
lizard
crocodile
elephant
giraffe
lion
tiger
zebra
kangaroo
koala
panda
polar bear
wolf
fox
deer
squirrel
hedgehog
bat
bee
ant
butterfly
spider
snail
camel
gorilla
chimpanzee
hippopotamus
rhinoceros
cheetah
flamingo
peacock
swan
duck
goose
chicken
crow
hummingbird
seal
otter
beaver
raccoon
moose
salmon
goldfish
crab
ladybird
mosquito
bison
llama
sloth
armadillo
platypus
""")

COUNTRIES = _lines("""
France
Japan
Brazil
Kenya
Canada
Mexico
India
Egypt
Australia
Norway
Peru
Vietnam
Italy
Spain
Germany
Greece
Turkey
Thailand
Argentina
Chile
Morocco
Nigeria
South Korea
Indonesia
Ireland
Portugal
Sweden
Poland
New Zealand
Iceland
Colombia
Cuba
Jamaica
the Philippines
Switzerland
Austria
the Netherlands
Belgium
Denmark
Finland
China
South Africa
Ghana
Ethiopia
Nepal
Mongolia
Malaysia
Tanzania
Hungary
Scotland
""")

CITIES = _lines("""
Paris
Tokyo
New York
London
Rome
Barcelona
Sydney
Cairo
Istanbul
Rio de Janeiro
Bangkok
Cape Town
Vancouver
Mexico City
Mumbai
Seoul
Berlin
Amsterdam
Lisbon
Prague
Vienna
Buenos Aires
Nairobi
Dublin
Edinburgh
Singapore
Hong Kong
Chicago
San Francisco
Kyoto
Marrakech
Stockholm
Copenhagen
Athens
Lima
Hanoi
""")

SEASONS = _lines("""
spring
summer
autumn
winter
""")

PROFESSIONS = _lines("""
nurse
firefighter
librarian
pilot
carpenter
electrician
plumber
architect
chef
baker
farmer
dentist
veterinarian
pharmacist
primary school teacher
journalist
photographer
accountant
lawyer
judge
police officer
software engineer
data scientist
translator
car mechanic
gardener
florist
tailor
barber
beekeeper
zookeeper
park ranger
marine biologist
astronomer
geologist
archaeologist
midwife
paramedic
physiotherapist
optician
welder
potter
museum curator
air traffic controller
lifeguard
sound engineer
graphic designer
urban planner
economist
social worker
""")

DISHES = _lines("""
pizza
sushi
pancakes
lasagne
guacamole
hummus
tomato soup
banana bread
fried rice
chicken curry
an omelette
apple pie
pad thai
falafel
risotto
chili con carne
mashed potatoes
a vegetable stir-fry
lentil soup
French toast
tacos
paella
shepherd's pie
ramen
porridge
granola
pesto pasta
a Caesar salad
chocolate chip cookies
carrot cake
dumplings
fish and chips
meatballs
ratatouille
gazpacho
pumpkin soup
scrambled eggs
flatbread
lemonade
potato salad
coleslaw
spring rolls
bean burritos
blueberry muffins
crepes
a grilled cheese sandwich
minestrone
tiramisu
""")

LANDMARKS = _lines("""
the Eiffel Tower
the Great Wall
Machu Picchu
the Taj Mahal
the Colosseum
Stonehenge
the Statue of Liberty
Angkor Wat
Petra
the Grand Canyon
Mount Kilimanjaro
the Sydney Opera House
Christ the Redeemer
the Acropolis
Chichen Itza
the Leaning Tower of Pisa
the Golden Gate Bridge
Big Ben
the Sagrada Familia
Mount Fuji
the Great Barrier Reef
Niagara Falls
the Pyramids of Giza
the Alhambra
Neuschwanstein Castle
Victoria Falls
the Forbidden City
Table Mountain
Uluru
the Louvre
""")

FACT_QUESTIONS = _lines("""
What is the largest desert in the world?
What is the longest river in Africa?
What is the tallest mountain in Europe?
What is the smallest planet in our solar system?
Which planet has the most moons?
What is the deepest part of the ocean?
Which animal is the fastest on land?
How many bones are in the adult human body?
What gas do plants take in from the air?
Which organ cleans the blood in the human body?
How far is the Moon from the Earth?
What is the largest organ of the human body?
What is the coldest place on Earth?
How many strings does a standard guitar have?
Which country has the largest population?
What is the most spoken language in the world?
When did the first person walk on the Moon?
Who was the first person to travel into space?
Who painted the ceiling of the Sistine Chapel?
Who wrote the play Hamlet?
Who discovered penicillin?
Who developed the theory of relativity?
What is the main gas in the air we breathe?
What is the chemical symbol for gold?
How long does it take the Earth to orbit the Sun?
What is the largest island in the world?
Which bird is the largest alive today?
What are the three primary colours?
Which metal is liquid at room temperature?
What do bees collect from flowers?
What is the largest rainforest in the world?
How many teeth does an adult human usually have?
What is the speed of sound in air?
Which country gave the Statue of Liberty to the United States?
What is the longest bone in the human body?
What is the main ingredient in bread?
Which vitamin does the body make from sunlight?
What is the largest lake in Africa?
How many hearts does an octopus have?
Which planet is known for its rings?
What language has the most native speakers in South America?
""")

TERMS = _lines("""
peninsula
glacier
haiku
prime number
fjord
river delta
sonnet
galaxy
hurricane
vaccine
carnivore
herbivore
symphony
fossil
constellation
marsupial
amphibian
tsunami
mirage
recession
thesaurus
palindrome
molecule
satellite
archipelago
savanna
mammal
budget
ecosystem
compass rose
pulley
lever
time zone
""")

VOCAB = _lines("""
serendipity
nostalgia
resilience
ubiquitous
ephemeral
meticulous
procrastinate
empathy
benevolent
candid
diligent
frugal
gregarious
hypothesis
irony
jargon
lethargic
mundane
nuance
optimistic
pragmatic
quaint
reluctant
skeptical
tenacious
vivid
whimsical
zealous
ambiguous
altruism
catalyst
dilemma
eloquent
fiasco
gullible
hindsight
inevitable
juxtapose
meander
novice
oblivious
paradox
redundant
sustainable
trivial
verbose
wanderlust
coherent
compromise
curious
""")

CONCEPTS = _lines("""
photosynthesis
gravity
inflation
democracy
evolution
the water cycle
climate change
electricity
magnetism
supply and demand
compound interest
the immune system
DNA
black holes
the internet
machine learning
erosion
ocean tides
the seasons
plate tectonics
the greenhouse effect
friction
buoyancy
the food chain
metabolism
taxes
the stock market
renewable energy
nuclear energy
sound waves
the speed of light
time zones
the placebo effect
opportunity cost
biodiversity
natural selection
the scientific method
cloud computing
encryption
antibiotics
the carbon cycle
osmosis
static electricity
the phases of the Moon
solar eclipses
the Doppler effect
habit formation
short-term memory
sleep cycles
interest rates
credit scores
composting
weather fronts
coral reefs
fermentation
the digestive system
the circulatory system
irrigation
the ozone layer
the metric system
""")

MACHINES = _lines("""
a refrigerator
a microwave oven
a bicycle
a car engine
a solar panel
a thermometer
a compass
a lock and key
a digital camera
a telescope
a microscope
a wind turbine
a hot air balloon
a submarine
an elevator
a vacuum cleaner
a washing machine
a smoke detector
a battery
a light bulb
a piano
a touchscreen
GPS navigation
a thermostat
a dishwasher
a helicopter
an airplane wing
a parachute
an electric kettle
a toaster
a sewing machine
a water filter
a pressure cooker
an escalator
a traffic light
a barcode scanner
a heat pump
an electric guitar
a radio
a printer
""")

WHY_QUESTIONS = _lines("""
Why is the sky blue?
Why do leaves change colour in autumn?
Why do we have leap years?
Why does ice float on water?
Why do cats purr?
Why do we yawn?
Why does bread go stale?
Why is the ocean salty?
Why do onions make people cry?
Why do birds migrate?
Why does the Moon seem to change shape?
Why do we dream?
Why does metal feel colder than wood?
Why do stars twinkle?
Why do we get goosebumps?
Why does popcorn pop?
Why are flamingos pink?
Why do zebras have stripes?
Why does a compass point north?
Why do apples turn brown after being cut?
Why is it hotter in summer than in winter?
Why do we need sleep?
Why do some people need glasses?
Why does soap remove dirt?
Why do heavy ships float?
Why do our ears pop on an airplane?
Why do dogs wag their tails?
Why does thunder come after lightning?
Why do some trees lose their leaves in winter?
Why does hot air rise?
Why do planes leave white trails in the sky?
Why is exercise good for the brain?
Why do we have different time zones?
Why do bees make honey?
Why do cut flowers wilt?
Why does milk go sour?
Why do we shiver when we are cold?
Why do our fingers wrinkle in water?
Why do some animals hibernate?
Why does a spoon look bent in a glass of water?
Why do snowflakes have six sides?
Why are most plants green?
Why do we have fingerprints?
Why does the wind blow?
Why does salt melt ice on roads?
Why can't people breathe underwater?
Why do babies sleep so much?
Why is Mars red?
Why does a balloon stick to a wall after you rub it on your hair?
Why do we sneeze?
Why does the sea have waves?
Why do some foods taste spicy?
""")

DIFFERENCE_PAIRS = _pairs("""
weather | climate
a virus | a bacterium
a fruit | a vegetable
a lake | a pond
an alligator | a crocodile
a frog | a toad
a moth | a butterfly
baking soda | baking powder
a hurricane | a tornado
speed | velocity
a simile | a metaphor
an ocean | a sea
a democracy | a monarchy
a debit card | a credit card
an asteroid | a comet
a rabbit | a hare
a turtle | a tortoise
a cold | the flu
stocks | bonds
latitude | longitude
renting a home | buying a home
a mountain | a hill
a village | a town
a dolphin | a porpoise
an emu | an ostrich
a laptop | a tablet
memory | storage in a computer
mass | weight
heat | temperature
an atom | a molecule
a star | a planet
a meteor | a meteorite
jam | jelly
a herb | a spice
a bee | a wasp
a leopard | a cheetah
a crow | a raven
a seal | a sea lion
a stew | a soup
a novel | a short story
a biography | an autobiography
empathy | sympathy
affect | effect
a river | a stream
a fact | an opinion
a goal | a plan
a cook | a chef
a bay | a gulf
a sweater | a cardigan
an email | a text message
weather forecasts | weather warnings
a loan | a grant
a museum | a gallery
a recipe | a menu
a comedy | a tragedy
""")

TELL_APART_PAIRS = _pairs("""
a frog | a toad
a moth | a butterfly
an alligator | a crocodile
a rabbit | a hare
a turtle | a tortoise
a bee | a wasp
a crow | a raven
a seal | a sea lion
a leopard | a cheetah
a dolphin | a shark
a mushroom that is safe | a mushroom that is poisonous
a real diamond | a fake diamond
a ripe avocado | an unripe avocado
a fresh egg | an old egg
an oak tree | a maple tree
a cold | an allergy
a genuine email | a phishing email
a sparrow | a finch
a mouse | a rat
a pine tree | a fir tree
""")

IMPORTANT = _pairs("""
is | sleep
is | drinking enough water
is | regular exercise
is | recycling
is | voting
is | biodiversity
is | reading to young children
is | washing your hands
is | wearing sunscreen
is | eating breakfast
is | saving money
is | learning a second language
are | bees
are | forests
are | wetlands
is | clean air
are | public libraries
is | kindness
is | teamwork
is | honesty
is | a balanced diet
is | stretching before exercise
are | coral reefs
is | a free press
is | backing up your files
is | good posture
is | spending time outdoors
is | music education
is | soil health
are | vaccines
is | the Moon
are | earthworms
is | a good night's sleep before an exam
is | keeping a budget
are | trees in cities
""")

CAUSES = _lines("""
earthquakes
thunder
ocean tides
rust
hiccups
the northern lights
headaches
tooth decay
fog
droughts
floods
the seasons on Earth
wind
volcanic eruptions
jet lag
sunburn
a sore throat
traffic jams
static shocks
ocean waves
snoring
acid rain
hail
allergies
muscle cramps
lightning
bad breath
power cuts
a rainbow
an echo
""")

BODY_EVENTS = _lines("""
exercise
sleep
skip breakfast
drink coffee
get a fever
laugh
feel stressed
stand up too quickly
eat a lot of sugar
do not drink enough water
climb a high mountain
swim in cold water
stay up all night
catch a cold
hold your breath
sit for many hours
meditate
sneeze
eat spicy food
blush
""")

PROCESSES = _lines("""
bread rises
a caterpillar becomes a butterfly
rain forms
a seed grows into a plant
paper is recycled
cheese is made
glass is made
chocolate is made from cocoa beans
a volcano forms
a letter gets delivered
coffee gets from the farm to your cup
electricity reaches your home
a river carves a canyon
honey is made
the heart pumps blood
food is digested
wool becomes a sweater
yogurt is made
a website loads in your browser
an email reaches someone's inbox
clouds form
snow forms
ice cream is made
a bill becomes a law
a tadpole becomes a frog
a mountain forms
a pearl forms inside an oyster
a tree makes its food
""")

HOWTO_TASKS = _lines("""
boil an egg
fix a flat tyre on a bicycle
write a cover letter
unclog a kitchen sink
iron a shirt
make a monthly budget
plant tomatoes
hang a picture frame
remove a coffee stain from a shirt
sharpen a kitchen knife
tie a tie
back up my phone
make a paper airplane
start a compost bin
wash a wool sweater
defrost a freezer
choose a ripe watermelon
make cold brew coffee
fold a fitted sheet
paint a room
fix a squeaky door
season a cast iron pan
introduce myself at a new job
write a thank-you email
prepare for a long flight
keep basil alive
build a simple website
reset my Wi-Fi router
take better photos with my phone
memorize a speech
fall asleep faster
stop procrastinating
learn to touch type
read a nutrition label
set up a fish tank
jump-start a car
make friends in a new city
bake bread without yeast
store fresh herbs
patch a small hole in a wall
make a good cup of tea
organize a small closet
clean a laptop keyboard
remove rust from tools
plan a road trip
sew a button back on
calm down before an exam
make pizza dough
teach a child to ride a bike
pack a suitcase efficiently
take care of a sourdough starter
write a short bio for a website
cook rice without a rice cooker
change a light bulb safely
start running as a beginner
apologize to a friend
say no politely
remember people's names
write a good email subject line
give a good presentation
build a campfire safely
measure a room for new furniture
read a paper map
use a compass
clean windows without streaks
get rid of fruit flies
grow herbs on a windowsill
brew loose-leaf tea
ask for a pay rise
start a journal
learn a poem by heart
make a simple bird bath
keep my phone battery healthy
wrap a present neatly
make a cheap meal plan for a week
write a complaint letter
clean white sneakers
keep cut flowers fresh longer
care for a new puppy
choose a good password
""")

CLEAN_OBJECTS = _lines("""
leather jacket
wooden table
pair of suede shoes
glass shower door
stainless steel sink
computer monitor
oven
microwave
water bottle
yoga mat
backpack
ceiling fan
wool carpet
fabric sofa
mattress
hairbrush
coffee maker
bathtub
silver necklace
piano keyboard
phone case
painted wall
fridge
barbecue grill
kettle
blender
wooden cutting board
window screen
baseball cap
teddy bear
bicycle chain
pair of glasses
laptop screen
frying pan
acoustic guitar
fish tank
""")

HOUSEPLANTS = _lines("""
snake plant
peace lily
spider plant
aloe vera plant
fiddle-leaf fig
orchid
cactus
bonsai tree
pothos
rubber plant
monstera
lavender plant
rosemary plant
tomato plant
basil plant
Boston fern
jade plant
ZZ plant
lemon tree in a pot
bird of paradise plant
money tree
African violet
Christmas cactus
""")

SKILLS = _lines("""
public speaking
drawing
chess
cooking
essay writing
swimming
piano playing
time management
listening
watercolour painting
photography
singing
juggling
knitting
typing
mental arithmetic
long-distance running
crossword solving
negotiation
poetry writing
tennis
French
baking
gardening
Python programming
stress management
decision making
guitar playing
dancing
yoga
rock climbing
portrait drawing
handwriting
concentration
speed reading
storytelling
video editing
""")

EVENTS = _lines("""
a job interview
a long hike
a marathon
a camping trip
a first day at a new school
a move to a new apartment
a big exam
a winter storm
a long car journey
a dinner party
a wedding speech
a piano recital
a power cut
a new baby
a family reunion
a garage sale
a presentation at work
a trip abroad
a day at the beach
a driving test
a bake sale
a book club meeting
a visit from my grandparents
a first solo trip
a school science fair
a team building day
a swimming competition
a hospital appointment
""")

APPLIANCES = _lines("""
fridge
washing machine
laptop
phone charger
Wi-Fi router
car battery
dishwasher
microwave
printer
TV remote
vacuum cleaner
heater
air conditioner
toaster
electric toothbrush
electric kettle
garage door opener
computer mouse
doorbell
oven
hair dryer
blender
""")

DOG_TRICKS = _lines("""
sit
stay
come when called
walk on a loose lead
roll over
shake hands
lie down
stop barking at the door
drop a toy
wait before eating
fetch a ball
go to its bed
""")

CRAFTS = _lines("""
a bird feeder out of a plastic bottle
a pencil holder out of a tin can
a bookmark out of an old greeting card
a kite out of paper and sticks
a photo frame out of cardboard
a plant pot out of an old mug
a puppet out of a sock
a wind chime out of old keys
a notebook out of scrap paper
a candle holder out of a glass jar
a rope bracelet out of string
a toy boat out of corks
a bird house out of scrap wood
a tote bag out of an old T-shirt
a paper lantern out of coloured paper
a board game out of a cereal box
a rain gauge out of a plastic bottle
a mask out of a paper plate
""")

POEM_SUBJECTS = _lines("""
the first snow of winter
a lighthouse at night
my grandmother's kitchen
a lost umbrella
the sound of rain on a roof
a busy train station
an old oak tree
the smell of fresh bread
a cat sleeping in the sun
the last day of summer
a city at midnight
a paper boat
the ocean at dawn
a forgotten toy
a quiet library
the moon over a lake
a garden after rain
a long road trip
an old friendship
a thunderstorm
riding a bicycle downhill
a mountain sunrise
autumn leaves
a cup of hot chocolate
fireflies in a field
a crowded market
a melting snowman
a kite on a windy day
the first day of school
an empty playground
a hummingbird
a candle in the dark
a fishing boat coming home
a rainy Monday morning
stars over the desert
a letter that never arrived
a field of sunflowers
a sleepy village
a river in spring
a bowl of noodle soup
the smell of the sea
an old photograph
a rooftop garden
a night bus
honeybees at work
the end of a long day
a grandfather's watch
a morning walk
""")

FOUND_OBJECTS = _lines("""
mysterious key
old map
locked box
message in a bottle
glowing stone
lost wallet
tiny door
golden ticket
broken compass
letter addressed to them
camera full of old photos
seed that grows overnight
stray puppy
strange coin
secret recipe
pair of magic shoes
notebook of unsolved riddles
music box that still plays
""")

STORY_PLACES = _lines("""
an old library
the attic
a train station
a quiet forest
the beach
a flea market
the basement of a museum
a mountain cabin
a city park
a sleepy village
the back of a taxi
a lighthouse
the school garden
a hotel lobby
an empty factory
a bakery
a fishing boat
a bookshop
a subway car
a castle ruin
a farmhouse kitchen
a space station
a tiny island
""")

SILLY_FOODS = _lines("""
pancakes
cheese
spaghetti
strawberries
ice cream
pickles
chocolate
soup
popcorn
carrots
cookies
noodles
mangoes
toast
pizza
""")

RELATIONS = _lines("""
grandmother
grandfather
best friend
sister
brother
aunt
uncle
cousin
neighbour
teacher
manager
coworker
mum
dad
son
daughter
partner
roommate
""")

HOBBIES = _lines("""
gardening
hiking
jazz music
baking
board games
fishing
football
painting
mystery novels
cycling
birdwatching
chess
spicy food
knitting
travelling
astronomy
photography
dancing
video games
camping
""")

POV_OBJECTS = _lines("""
teapot
umbrella
old shoe
streetlight
alarm clock
library book
bicycle
snow globe
pencil
kite
mailbox
paper cup
garden gnome
backpack
candle
violin
chess piece
rubber duck
window
park bench
traffic cone
suitcase
mirror
spoon
teddy bear
typewriter
piano
broom
wristwatch
doormat
scarecrow
rowing boat
balloon
sock
coffee mug
""")

GENRES = _lines("""
mystery
science fiction
adventure
fantasy
ghost
comedy
detective
""")

SETTINGS = _lines("""
a lighthouse on a stormy coast
a floating city
a small bakery in Paris
a research station in Antarctica
an underwater hotel
a night train across Europe
a village where it never stops raining
a colony on Mars
an old boarding school
a desert oasis
a busy hospital
a medieval market
a jungle temple
a snowbound mountain lodge
a museum after closing time
a pirate ship
a sleepy fishing town
a robot factory
a library with endless floors
a travelling circus
a tiny island with one family
a city where nobody sleeps
a royal palace
an old bookshop
a cruise ship
""")

MEETING_PLACES = _lines("""
a watering hole
a farm gate
a city park
the edge of a pond
a zoo at night
a garden fence
a forest clearing
a busy harbour
""")

BUSINESSES = _lines("""
bakery
bicycle repair shop
coffee shop for dog owners
bookshop
vegan restaurant
cleaning service
language school
plant nursery
yoga studio
ice cream van
board game cafe
tutoring service
taco food truck
second-hand clothing store
pet grooming salon
recording studio
hardware store
flower shop
escape room
climbing gym
photography studio
juice bar
farm shop
toy store
bike tour company
sushi bar
laundromat
dance school
pottery studio
car wash
music school
moving company
computer repair shop
travel agency
""")

PRODUCTS = _lines("""
solar-powered phone charger
waterproof backpack
self-watering plant pot
lightweight camping stove
pair of noise-cancelling electric toothbrush
reusable water bottle
ergonomic office chair
children's bicycle helmet
alarm clock that wakes you gently with light
handmade ceramic mug
folding umbrella
wooden chess set
warm wool blanket
electric toothbrush
recipe book for beginners
portable speaker
pair of hiking boots
orthopaedic dog bed
beeswax candle
set of colouring pencils
travel pillow
digital kitchen scale
insulated lunch box
window bird feeder
cork yoga mat
adjustable desk lamp
jigsaw puzzle of a mountain lake
raincoat for children
cast iron pan
cooperative board game for families
""")

SCENES = _lines("""
a busy market at sunrise
a thunderstorm over the sea
a quiet forest after snowfall
a crowded football stadium
a kitchen on a holiday morning
a small harbour at sunset
a desert at noon
a train station at rush hour
a child's bedroom full of toys
a meadow in spring
a rainy city street at night
a mountain top above the clouds
a fairground at night
an empty beach in winter
a garden full of bees
a library on the day before an exam
a campfire under the stars
a bakery early in the morning
a lake frozen solid
a busy night market
a school playground at break time
a farm at dawn
a concert hall before the show
a cosy cafe on a cold day
a hospital waiting room
""")

MAGIC_ITEMS = _lines("""
magic mirror
golden key
enchanted apple
flying carpet
wishing well
silver bell
talking tree
glass slipper
magic bean
invisible cloak
crystal ball
singing fountain
""")

GIFTS = _lines("""
the birthday present
helping me move house
looking after my cat
the lovely dinner
the book recommendation
teaching me to drive
the handmade scarf
coming to my graduation
the flowers
lending me their car
the advice about my new job
fixing my bike
""")

CLUBS = _lines("""
chess
hiking
book
gardening
photography
running
cooking
astronomy
film
knitting
cycling
debate
birdwatching
board game
swimming
drama
""")

LIST_CATEGORIES = _lines("""
fruits that are high in vitamin C
animals that live in the Arctic
ways to save water at home
musical instruments with strings
vegetables that grow well in pots
board games for families
things to do on a rainy day
healthy snacks for work
sports played with a ball
birds that cannot fly
famous painters
countries in South America
sources of renewable energy
herbs used in Italian cooking
things to pack for a beach trip
ways to reduce stress
jobs that involve working outdoors
common kitchen tools
trees that lose their leaves in autumn
animals that live in the ocean
foods that are high in protein
ways to be kinder to the environment
hobbies you can do at home
words that describe the weather
insects that help gardens
inventions of the twentieth century
types of clouds
things that are usually made of glass
breakfast foods from around the world
exercises you can do without equipment
skills every adult should have
ways to make a small room look bigger
fun things to do with kids in winter
common symptoms of a cold
dog breeds that are good with children
ingredients for a simple salad
things to check before a long drive
questions to ask when buying a used car
ways to learn new words in a foreign language
classic children's books
mammals that can swim
desserts made with apples
things you can recycle
ways to stay cool in hot weather
good habits for students
animals that hibernate
spices used in Indian cooking
things found in a first aid kit
popular team sports
ways to use leftover rice
flowers that attract bees
jobs in a hospital
parts of a plant
safety rules for swimming
reasons to learn to cook
cheap date ideas
ways to save energy at home
common mistakes in job applications
qualities of a good friend
indoor plants that are easy to care for
uses for baking soda
games you can play on a car journey
famous rivers
animals with stripes
tools a carpenter uses
foods that contain calcium
ways to start a conversation
""")

OCCASIONS = _lines("""
a rainy Sunday afternoon
a child's birthday party
a cheap weekend in the city
a picnic in the park
a team-building day at work
a science fair project
a quick family dinner
a garden on a small balcony
a gift for a coworker
a school fundraiser
a date night at home
a summer holiday with kids
a blog about cooking
a surprise party
a photography project
a healthy lunchbox
decorating a small bedroom
a costume party
a community clean-up day
a podcast about history
an anniversary gift
a board game night
a winter holiday at home
a classroom activity about space
a retirement party
a craft project with recycled materials
a vegetarian barbecue
a welcome basket for new neighbours
a morning routine
a Halloween costume
a charity event
a summer reading list
""")

TRIPS = _lines("""
a weekend camping trip
a week at the beach
a business trip to a cold city
a ski holiday
a long-haul flight
a music festival
a hiking trip in the mountains
a school trip
a cruise
a road trip with kids
a backpacking trip in Southeast Asia
a day at the zoo
a short hospital stay
a wedding abroad
a fishing trip
a safari
a semester studying abroad
a cycling tour
a weekend at my grandparents' house
a winter trip to Iceland
""")

ASK_WHO = _lines("""
an interviewer at the end of a job interview
a new doctor
a landlord before renting a flat
a wedding photographer
a personal trainer
my child's teacher at a parent meeting
a car mechanic
a new roommate
a tour guide
a financial adviser
a babysitter
a plumber before hiring them
a university admissions officer
a vet about a new kitten
a builder about a kitchen renovation
an older relative about their childhood
a mentor at work
a real estate agent
""")

PET_ADJECTIVES = _lines("""
fluffy
black
tiny
lazy
playful
grumpy
spotted
ginger
white
clever
noisy
elderly
""")

PETS = _lines("""
kitten
puppy
goldfish
rabbit
hamster
parrot
tortoise
pony
guinea pig
""")

RHYME_WORDS = _lines("""
cat
light
day
moon
tree
rain
star
cake
bell
door
snow
ring
fun
game
blue
heart
song
sea
fire
gold
hope
sky
mind
train
dream
boat
time
stone
sun
night
house
rose
chair
bear
friend
road
sing
wave
cold
wing
lake
green
""")

EXAMPLE_OF = _lines("""
verbs that describe movement
words with a silent letter
compound words
metaphors about time
onomatopoeia
adjectives that describe food
polite ways to say no
open-ended questions
chemical changes you can see in the kitchen
simple machines
idioms about the weather
alliterative phrases
jobs that did not exist fifty years ago
inventions that changed daily life
foods that are naturally sweet
nouns that are also verbs
English words borrowed from French
physical changes
animals that use camouflage
things that are magnetic
ways to say hello in other languages
herbivores
omnivores
materials that conduct electricity
materials that insulate heat
units of measurement
palindromes
homophones
synonyms for happy
antonyms for big
renewable resources
predators in the ocean
""")

PARTS_OF = _lines("""
a flower
a bicycle
a computer
an animal cell
a volcano
a guitar
a castle
a tree
the human eye
the human heart
a business plan
a short story
a cover letter
a newspaper article
a sailing boat
a camera
a suspension bridge
a seed
a clock
a science experiment
a shoe
a piano
a book
a smartphone
a tooth
an email
a river
a persuasive essay
a car
a spider
""")

HOBBY_PEOPLE = _lines("""
a retired teacher
a busy student
someone who works from home
a teenager who likes science
a person who loves the outdoors
someone on a tight budget
a new parent
someone who wants to meet people
a person with a small apartment
someone who loves music
a ten-year-old
a person who wants to be more creative
someone recovering from a knee injury
a couple who want to spend more time together
an introvert
someone who travels a lot
an office worker who sits all day
a grandparent and a grandchild together
a person living in a rainy city
someone who enjoys puzzles
""")

GOALS = _lines("""
sleeping better
saving money on groceries
studying for exams
running a first 5K
staying focused while working from home
keeping a tidy kitchen
making new friends as an adult
writing a clear email
cooking for one person
reducing screen time
keeping houseplants alive
travelling on a budget
learning a new language
speaking in public
staying warm in winter
drinking more water
eating more vegetables
managing a small team
waking up early
writing a good essay
looking after a new kitten
packing light
driving in snow
reading more books
being a good listener
keeping a journal
staying safe while hiking alone
growing tomatoes
organizing a desk
planning a wedding on a budget
taking notes in class
staying motivated at the gym
baking a first loaf of bread
sticking to a budget
reducing food waste
having a job interview online
hosting a dinner party
clearing out a cluttered closet
keeping a long-distance friendship
""")

GEO_THINGS = _lines("""
rivers
mountains
cities
countries
lakes
""")

REGIONS = _lines("""
Europe
Asia
Africa
South America
North America
""")

# -- reasoning ---------------------------------------------------------------------------------------------------
NAMES = _lines("""
Anna
Ben
Carlos
Dina
Emma
Farid
Grace
Hugo
Isla
Jamal
Kenji
Lena
Mateo
Nora
Omar
Priya
Rosa
Sam
Tara
Umar
Vera
Will
Yara
Zoe
Leo
Mia
Noah
Ivy
Max
Lucia
""")

COUNT_ITEMS = _lines("""
apples
marbles
stickers
pencils
cookies
books
stamps
shells
cards
balloons
eggs
oranges
crayons
coins
toy cars
cupcakes
buttons
beads
postcards
candles
""")

CONTAINERS = _lines("""
box
bag
jar
basket
tray
pack
""")

VEHICLES = _lines("""
car
train
bus
boat
truck
tractor
motorbike
ship
cyclist
""")

TRAVELLERS = _pairs("""
train | leaves
bus | leaves
ferry | departs from
flight | takes off from
coach | leaves
""")

WEEKDAYS = _lines("""
Monday
Tuesday
Wednesday
Thursday
Friday
Saturday
Sunday
""")

COMPARATIVES = _pairs("""
taller | shortest | tallest
older | youngest | oldest
faster | slowest | fastest
heavier | lightest | heaviest
shorter | tallest | shortest
younger | oldest | youngest
""")

HEAVY_STUFF = _lines("""
feathers
bricks
cotton wool
iron nails
popcorn
sand
apples
paper
""")

ODD_ONE_OUT = {
    "fruits": _lines("""
apple
banana
cherry
grape
mango
pear
plum
peach
"""),
    "animals": _lines("""
horse
tiger
rabbit
elephant
fox
bear
monkey
zebra
"""),
    "colours": _lines("""
red
blue
green
yellow
purple
orange
brown
pink
"""),
    "vehicles": _lines("""
bus
bicycle
train
car
van
tram
lorry
scooter
"""),
    "instruments": _lines("""
violin
trumpet
drum
flute
piano
cello
harp
guitar
"""),
    "furniture": _lines("""
chair
table
sofa
wardrobe
bed
desk
bookcase
stool
"""),
    "clothes": _lines("""
shirt
jacket
scarf
sock
hat
coat
glove
skirt
"""),
    "body parts": _lines("""
elbow
knee
shoulder
ankle
wrist
nose
ear
thumb
"""),
}

SALE_ITEMS = _lines("""
jacket
pair of shoes
lamp
backpack
watch
bicycle helmet
coffee table
board game
""")

SAVE_FOR = _lines("""
bicycle
guitar
pair of roller skates
telescope
tent
video game
skateboard
camera
""")

SYLLOGISMS = _pairs("""
my neighbour's pet | cat | cats | mammal | mammals
the bird on the roof | sparrow | sparrows | bird | birds
the flower in the vase | rose | roses | plant | plants
the animal in the cage | parrot | parrots | bird | birds
the tree in the garden | oak | oaks | tree | trees
the instrument on the stage | violin | violins | string instrument | string instruments
the shape on the board | square | squares | rectangle | rectangles
the creature in the corner | spider | spiders | animal | animals
""")

DESTINATIONS = _lines("""
school
work
the station
the park
the library
the airport
the swimming pool
her grandmother's house
""")

RECIPE_INGREDIENTS = _lines("""
flour
sugar
rice
butter
pasta
cheese
oats
""")

RECTANGLES = _lines("""
garden
bedroom
carpet
field
table top
swimming pool
poster
playground
""")

GROUP_SCENES = _pairs("""
birds | sitting on a fence | fly away | land on the fence
ducks | swimming on a pond | fly off | join them
people | on a bus | get off at the first stop | get on
cows | in a field | are taken to the barn | are brought into the field
cars | in a car park | drive away | arrive
children | in a playground | go home | arrive
""")

# -- classification ----------------------------------------------------------------------------------------------
REVIEWS = _lines("""
The pasta was cold and the waiter forgot our drinks twice.
I have used this blender every morning for a year and it still works perfectly.
The hotel room was clean, but the view was just a car park.
Fast delivery and the shoes fit exactly as described.
The film was far too long and I nearly fell asleep.
The book arrived on Tuesday.
This is the most comfortable chair I have ever owned.
The battery died after two days and customer service never replied.
The museum was fine, nothing special but not bad either.
Our guide was funny and knew everything about the old town.
The app crashes every time I try to upload a photo.
The coffee was strong and the croissants were still warm.
It does what it says. The colour is grey.
I would not buy this vacuum again; it is loud and weak.
The concert was magical from the first song to the last.
The package was a little late, but everything inside was fine.
The paint peeled off the walls within a month.
Kind staff, tasty food and a lovely garden to sit in.
The headphones are okay for the price.
My kids loved the science kit and played with it all weekend.
The tent leaked during the first rain shower.
The course covered the basics, as expected.
Absolutely delicious soup, I will be back next week.
The seats were uncomfortable and the screen was blurry.
The jacket is warm, light and looks great.
The instructions were confusing and two screws were missing.
The train left on time and arrived on time.
The dentist was gentle and explained every step.
I waited forty minutes for a table even though I had booked.
The plant arrived healthy and is already growing new leaves.
The game is fun for an hour, then it gets repetitive.
The hairdresser listened carefully and I love my new haircut.
The room smelled of smoke and the shower was cold.
The mattress is firm, which some people will like.
This phone case cracked the first time I dropped it.
A beautiful little bookshop with a friendly owner.
The show started ten minutes late.
The pizza was soggy and the cheese tasted strange.
Great value for money and very easy to set up.
The gym is clean, but it is always crowded after work.
The bike handles well on hills and the brakes are excellent.
The hotel breakfast had the same three things every day.
Our flight was cancelled and nobody told us why.
The puzzle has 500 pieces and comes in a square box.
I am really impressed with how quickly the plumber fixed the leak.
""")

HEADLINES = _lines("""
Local team wins the national basketball final in overtime
Parliament votes on a new law about school lunches
Scientists find water ice in a crater on the Moon
Coffee chain opens two hundred new stores this year
Famous singer announces a world tour for next summer
Marathon runner breaks the course record by two minutes
Mayor promises more bicycle lanes before the election
New telescope captures images of a distant galaxy
Car maker reports record profits despite rising costs
Animated film tops the box office for the third week
Tennis champion retires after twenty years on tour
Government announces a plan to cut income taxes
Researchers develop a battery that charges in five minutes
Tech company buys a small start-up for two billion dollars
Award-winning actor joins the cast of a new crime series
Football club signs a young striker from Brazil
Prime minister meets foreign leaders to discuss trade
Doctors test a new vaccine against the common cold
Supermarket prices rise for the fourth month in a row
Popular cooking show returns with a new host
Swimmer wins three gold medals in one evening
City council approves a budget for new parks
Biologists discover a new species of frog in the rainforest
Airline adds direct flights between two large cities
Comedy festival sells out in record time
Cyclist crashes on the final mountain stage
Opposition party chooses a new leader
Study finds that sleep helps the brain store memories
Small bakery grows into a national brand
Music streaming service adds audiobooks to its app
Olympic committee names the host city for the next games
Voters head to the polls in the regional election
Engineers build a robot that can climb stairs
Bank raises interest rates for the second time this year
Museum opens an exhibition of video game art
""")

STATEMENTS = _lines("""
Water freezes at zero degrees Celsius.
Summer is the best season of the year.
The Pacific is the largest ocean on Earth.
Cats make better pets than dogs.
Paris is the capital of France.
Pizza tastes better than pasta.
A week has seven days.
Learning to play the piano is boring.
The human heart has four chambers.
Modern art is more interesting than old paintings.
Spiders have eight legs.
Everyone should learn to cook.
The Sun rises in the east.
Rainy days are depressing.
Bananas are a good source of potassium.
Football is the most exciting sport to watch.
Mount Everest is the highest mountain above sea level.
Reading on paper is more enjoyable than reading on a screen.
Plants need light to grow.
The best holidays are spent at the beach.
Sound travels faster in water than in air.
Jazz is the greatest kind of music.
Penguins live mostly in the Southern Hemisphere.
City life is better than country life.
Honey can last for a very long time without spoiling.
Homework is a waste of time.
The Moon orbits the Earth.
Mornings are the most productive part of the day.
Bats are mammals.
Blue is the most beautiful colour.
The Amazon rainforest is in South America.
Video games are too violent.
Lightning is hotter than the surface of the Sun.
Chocolate ice cream is the best flavour.
The Earth is about four and a half billion years old.
Public transport is more pleasant than driving.
""")

MESSAGES = _lines("""
Congratulations! You have won a free cruise. Click this link now to claim your prize.
Hi Sam, are we still meeting for lunch at one o'clock tomorrow?
Your account has been locked. Send us your password to unlock it immediately.
Reminder: your dentist appointment is on Thursday at 10 a.m.
Earn five thousand dollars a week working from home, no experience needed!
Mum, I'll be home a bit late tonight because practice ran over.
You are our lucky winner! Pay a small fee to receive your new phone.
The team meeting has moved to room 4B. See you there.
Limited offer: buy cheap watches at 90% off, today only!!!
Thanks for your order. Your parcel will arrive on Friday.
Dear friend, I need your help moving money out of my country. You will get a reward.
Can you send me the notes from today's biology class?
Your bank card will be blocked unless you confirm your details at this website.
Happy birthday! Hope you have a wonderful day.
Lose ten kilos in one week with this secret pill!
The library book you reserved is ready to collect.
Click here to claim the inheritance left to you by an unknown relative.
Don't forget to bring your swimming kit on Wednesday.
URGENT: your parcel is held at customs, pay the fee now to release it.
Dinner is at seven. Could you pick up some bread on the way?
You have been selected for a free holiday. Reply YES to claim.
Our quarterly report is attached. Let me know if you have questions.
Get rich fast with this amazing crypto coin, guaranteed returns!
Your package was delivered to your neighbour at number 12.
Hot singles in your area want to meet you now.
The school trip has been cancelled because of the storm.
Final notice: your car warranty expires today, call this number immediately.
Thanks for helping me with the garden yesterday.
""")

FORMALITY = _lines("""
Hey, what's up? Wanna grab a pizza later?
I am writing to enquire about the position advertised on your website.
Thanks a bunch, you're a lifesaver!
We regret to inform you that your application was unsuccessful.
Gonna be late, traffic is crazy.
Please find the requested documents attached to this email.
No worries, catch you later!
The committee will convene on Monday to review the proposal.
Dude, that movie was awesome.
I would be grateful if you could confirm receipt of this letter.
Can't make it tonight, sorry!
Kindly ensure that all forms are submitted by Friday.
lol that's hilarious
We appreciate your patience while we investigate the issue.
Yo, did you see the game last night?
It is with great pleasure that we announce the winners of this year's award.
Cool, see ya tomorrow.
Guests are requested to vacate their rooms by eleven o'clock.
OMG, this cake is so good!
The board has approved the budget for the coming financial year.
Hang on a sec, I'll check.
Your cooperation in this matter is highly appreciated.
Nah, I'm good, thanks.
Applicants must hold a valid driving licence.
Sorry, my bad, I totally forgot.
We look forward to welcoming you at the conference.
""")

EMOTION_SENTENCES = _lines("""
I can't believe I finally passed my driving test!
My best friend is moving to another country next week.
Someone scratched my new car and just drove away.
I heard footsteps downstairs, but I live alone.
Wait, you organised a party for me? I had no idea!
Our old dog died this morning.
They cancelled my flight again without any explanation.
I got the job I have wanted for years!
The lights went out and the wind was howling outside.
I opened the box and there was a kitten inside!
I keep looking at old photos of my grandmother.
He took the last piece of cake after I asked him not to.
My exam results came back and I got top marks.
The dentist is calling my name next and my hands are shaking.
I never expected to see my old teacher working at the supermarket.
Everyone forgot my birthday this year.
The neighbours played loud music until three in the morning again.
We are going to have a baby!
The plane suddenly dropped and people started screaming.
It turns out the quiet boy in my class is a chess champion.
The house feels so empty since the children left.
I waited an hour and she never showed up.
Our team won the cup in the last minute!
There is a spider the size of my hand on the bathroom wall.
""")

POS_WORDS = {
    "noun": _lines("""
table
river
idea
garden
teacher
window
music
mountain
bread
city
"""),
    "verb": _lines("""
run
whisper
build
forget
carry
laugh
explain
swim
borrow
paint
"""),
    "adjective": _lines("""
quiet
bright
heavy
gentle
brave
narrow
empty
curious
soft
ancient
"""),
}

FLYERS = _lines("""
eagle
bat
bee
sparrow
owl
butterfly
parrot
duck
seagull
dragonfly
""")

NON_FLYERS = _lines("""
penguin
cow
ostrich
frog
snail
dog
emu
horse
kiwi bird
tortoise
""")

LIVING = _lines("""
a tree
a mushroom
a fern
a goldfish
moss
a worm
a sunflower
bacteria
""")

NON_LIVING = _lines("""
a rock
a cloud
a river
a robot
a candle flame
a plastic bottle
sand
a car
""")

STATES = {
    "solid": _lines("""
iron
salt
sugar
gold
chalk
sand
butter
"""),
    "liquid": _lines("""
water
milk
honey
olive oil
vinegar
mercury
orange juice
"""),
    "gas": _lines("""
oxygen
helium
carbon dioxide
neon
nitrogen
steam
"""),
}

MATERIALS = _lines("""
wool
plastic
silk
nylon
cotton
glass
steel
leather
wood
concrete
polyester
clay
paper
bamboo
aluminium
granite
marble
linen
polystyrene
brick
cork
acrylic
slate
bronze
cardboard
""")

PRODUCE = _lines("""
an apple
a carrot
a banana
spinach
broccoli
a mango
rice
oatmeal
cheese
yogurt
a potato
a pear
a cucumber
wheat
barley
milk
a strawberry
a pineapple
lettuce
an onion
corn
butter
a cherry
cabbage
a peach
quinoa
celery
a kiwi
a watermelon
cauliflower
a lemon
a pea
""")

PLACE_TYPES = _lines("""
Brazil
Lisbon
Africa
the Pacific
the Alps
Tokyo
the Andes
Canada
Nairobi
Antarctica
the Atlantic
the Himalayas
Peru
Oslo
Europe
the Indian Ocean
the Rocky Mountains
Egypt
Seoul
Asia
the Arctic Ocean
the Pyrenees
Vietnam
Toronto
South America
Chile
Madrid
Iceland
""")

TOPIC_QUESTIONS = _lines("""
How much should I save each month for retirement?
What is the best way to treat a mild burn?
Which countries can I visit without a visa?
Why does my laptop get so hot?
How long should I rest a steak after cooking it?
Is it worth paying off my credit card early?
How do I stop my knee hurting when I run?
What should I see on my first visit to Rome?
How do I free up space on my phone?
What can I cook with leftover chicken?
How do interest rates affect my mortgage?
How many hours of sleep does a teenager need?
When is the cheapest time to book a flight?
Should I buy a tablet or a laptop for school?
How do I stop cookies from spreading in the oven?
What is a good first investment for a beginner?
How can I lower my blood pressure naturally?
What should I pack for a week in Norway?
Why is my Wi-Fi so slow in the evening?
How do I make a sauce thicker?
""")

# -- rewriting ---------------------------------------------------------------------------------------------------
BAD_GRAMMAR = _lines("""
Me and him goes to the market every saturday.
She don't like apples but she eat bananas.
Their going to the park after school tomorow.
I has finished my homework already yesterday.
The dogs is barking at the postman every morning.
We was very tired after the long walk.
He have two brothers and one sisters.
Can you borrow me your pen for a minute?
The childrens played in the garden all afternoon.
I seen that film last week and it were great.
She runned to the bus stop but the bus was gone.
Your the best friend I ever had.
There is three apples on the table.
My mother she works in a hospital.
I am agree with your idea.
He don't know nothing about cars.
The book what I read was very interesting.
Its raining so we cant go outside.
I goed to the library to return them books.
Everyone have their own opinion.
We have went to Spain three times.
The weather is more hotter today than yesterday.
Who's bag is this on the floor?
I didn't had time to eat breakfast.
She is more taller than her brother.
Between you and I, the test was easy.
The team are winning there third game.
I look forward to meet you next week.
He sing in the choir since he was ten.
Less people came to the meeting than we expected.
Each of the students have a locker.
Me and my friends is going camping.
They was supposed to arrive at noon.
I can't hardly hear you.
If I would have known, I would have come earlier.
The informations you gave me were useful.
""")

BLUNT = _lines("""
Send me the report now.
Your presentation was too long.
Move your car, it's blocking my driveway.
I need the money you owe me back this week.
Stop making so much noise at night.
Your email makes no sense.
Fix this bug before lunch.
You forgot to invite me again.
Clean up the kitchen after you use it.
I don't want to come to your party.
The food you served was cold.
Answer my question.
Don't call me after nine.
You're late again.
Give me a discount or I'm leaving.
Your dog keeps digging up my garden.
I need a day off on Friday.
This isn't what I ordered.
Tell me why my order hasn't arrived.
Turn your music down.
Do your share of the work.
Your handwriting is impossible to read.
I want a refund.
You took my parking space.
""")

ACTIVE_SENTENCES = _lines("""
The chef cooked a delicious meal.
The children painted the fence.
A storm destroyed the old barn.
The students wrote the report.
The committee approved the new plan.
My brother fixed the broken chair.
The cat knocked over the vase.
Thousands of people visit the museum every year.
The teacher marked all the exams.
The wind blew the leaves across the yard.
The company launched a new product.
Our neighbour planted three apple trees.
The police caught the thief.
The gardener trimmed the hedges.
The scientist discovered a new comet.
The band played the national anthem.
The mechanic repaired my car.
The baker bakes fresh bread every morning.
The firefighters rescued the kitten.
Engineers designed the bridge.
My grandmother knitted this scarf.
The town built a new library.
The dog chased the ball.
The volunteers cleaned the beach.
""")

COMPLEX_SENTENCES = _lines("""
The municipality will commence the renovation of the thoroughfare forthwith.
Individuals who wish to participate should endeavour to register prior to the deadline.
The physician advised the patient to refrain from strenuous physical exertion.
Due to unforeseen circumstances, the performance has been postponed indefinitely.
The establishment does not permit the consumption of beverages purchased elsewhere.
It is imperative that all personnel evacuate the premises immediately.
The committee reached a consensus after protracted deliberations.
Precipitation is anticipated to intensify during the latter part of the afternoon.
The applicant demonstrated exceptional proficiency in numerous disciplines.
Residents are encouraged to utilise the designated receptacles for recyclable materials.
The manuscript was subjected to rigorous scrutiny prior to publication.
Consumption of the medication should be accompanied by a substantial quantity of water.
The vehicle's velocity exceeded the permissible limit on numerous occasions.
We endeavour to ameliorate the customer experience continuously.
The expedition was terminated owing to inclement meteorological conditions.
Visitors are requested to refrain from photographing the exhibits.
The infant exhibited signs of considerable fatigue following the excursion.
The proprietor has elected to discontinue the sale of confectionery.
Attendance at the orientation session is obligatory for all new employees.
The renovation necessitated the temporary relocation of the entire department.
""")

DIALOGUES = _lines("""
A: Did you remember to buy milk? B: No, sorry, the shop was closed. A: Then we'll have tea without it.
A: Are you coming to the match on Saturday? B: I can't, I'm working. A: That's a shame, I'll tell you the score.
A: The printer is broken again. B: Did you try turning it off and on? A: Yes, twice. B: I'll call the technician.
A: Can I borrow your bike tomorrow? B: Sure, but the back tyre is a bit flat. A: No problem, I'll pump it up.
A: I think we're lost. B: The map says the lake is to the north. A: Then we should turn left at the bridge.
A: Your garden looks amazing. B: Thanks, I planted everything in April. A: Could you give me some tips?
A: The meeting is at three, right? B: It was moved to four. A: Good, that gives me time to finish the slides.
A: How was your first day? B: Busy, but everyone was friendly. A: That's a good start.
A: Is the soup too salty? B: A little. A: I'll add some water and potatoes.
A: We should book the hotel soon. B: Prices go up next week. A: Let's do it tonight then.
A: I can't find my keys. B: Did you check your coat pocket? A: Oh, there they are.
A: Do you want to watch a film or play a game? B: A game, I've watched too many films this week.
A: The train is delayed by an hour. B: Let's get a coffee while we wait. A: Good idea, there's a cafe by the entrance.
A: Have you finished the book? B: Almost, I have two chapters left. A: Don't tell me the ending when you do.
A: My phone screen cracked. B: Is it still working? A: Yes, but I can hardly read anything. B: There's a repair shop on Main Street.
A: Should we walk or take the bus? B: It's sunny, let's walk. A: Fine, but we need to leave now.
A: Who is cooking tonight? B: I cooked yesterday. A: All right, I'll make pasta.
A: The kids want a puppy. B: Who will walk it every morning? A: They promised they would. B: We'll see.
A: I think I failed the test. B: You studied for weeks. A: I know, but the last question was very hard.
A: Did the plumber come? B: Yes, he fixed the leak in ten minutes. A: Great, how much did it cost?
""")

PARAGRAPHS = _lines("""
Our town library started lending more than books last year. People can now borrow sewing machines, board games and even gardening tools. The librarians say the new service has brought in many visitors who had not been there in years.
Honeybees communicate with a special dance. When a bee finds a good patch of flowers, it returns to the hive and moves in a figure-eight pattern. The angle and length of the dance tell the other bees where to fly.
Maria opened her bakery at five every morning, long before the street woke up. She baked bread first, then pastries, and saved the cakes for last. By seven there was usually a queue outside the door.
Walking for thirty minutes a day can improve your health in many ways. It strengthens the heart, helps with sleep and can lift your mood. You do not need special equipment, only comfortable shoes.
The old bridge over the river was closed in March after engineers found cracks in its supports. A ferry now carries people across while a new bridge is built. The work is expected to take two years.
Octopuses are remarkably clever animals. They can open jars, solve simple puzzles and escape from tanks. Some scientists believe they recognise individual people.
Last summer my family rented a small cabin by a lake. There was no internet, so we spent our days swimming, reading and playing cards. It was the most relaxing holiday we have ever had.
Composting turns kitchen scraps into rich soil. Fruit peels, coffee grounds and eggshells can all go into a compost bin. After a few months, the mixture breaks down into something plants love.
The school decided to start classes thirty minutes later this year. Teachers say students seem more awake in the morning. Some parents, however, worry about the later finish in the afternoon.
Penguins cannot fly, but they are excellent swimmers. Their wings work like flippers, and their bodies are shaped to slip through the water. Some species can dive more than five hundred metres deep.
A good night's sleep starts long before bedtime. Experts suggest avoiding screens for an hour before bed and keeping the bedroom cool and dark. Going to bed at the same time every night also helps.
The city has planted ten thousand trees over the past five years. The trees give shade in summer and help clean the air. Officials hope to plant ten thousand more by the end of the decade.
Tom had never cooked a full meal before his grandmother visited. He followed her old recipe for vegetable soup step by step. To his surprise, she asked for a second bowl.
Glass is made by heating sand until it melts. The hot liquid is shaped by blowing, pressing or pouring it into moulds. As it cools, it becomes hard and clear.
Many people feel nervous before speaking in public. Practising in front of a mirror or a friend can make a big difference. It also helps to focus on the message rather than on yourself.
The museum's new dinosaur hall opened on Saturday. Its centrepiece is a skeleton more than twenty metres long. Children were allowed to touch a real fossil tooth at the entrance.
Volunteers spent the weekend cleaning the beach after a storm. They collected plastic bottles, fishing nets and even an old bicycle. The organisers plan to make the clean-up a monthly event.
Rainbows appear when sunlight passes through drops of water in the air. Each drop bends the light and splits it into different colours. That is why we often see rainbows just after a shower.
Lena started learning the violin at the age of forty. At first she practised for only ten minutes a day. Two years later, she played her first concert with a local orchestra.
The price of coffee has risen sharply this year. Poor harvests in several countries have reduced the supply of beans. Some cafes have already raised the price of a cup.
Camels are well suited to life in the desert. They can go for days without drinking and store fat in their humps for energy. Their wide feet keep them from sinking into the sand.
Our neighbour keeps chickens in her back garden. Every morning she collects a few eggs and often gives some to us. The children love helping her feed the hens.
Recycling one aluminium can saves enough energy to run a television for hours. Aluminium can be recycled again and again without losing quality. Yet many cans still end up in landfill.
The new train line will connect the two largest cities in the region. The journey will take fifty minutes instead of two hours by car. Construction begins next spring.
Sam forgot his umbrella on the first rainy day of autumn. By the time he reached the office, his shoes were soaked. He now keeps a spare umbrella in his desk drawer.
Elephants have an excellent memory. They can remember the locations of water holes many kilometres apart. Older females often lead the herd to water during dry seasons.
Learning a new language takes patience. Short daily practice is usually better than long sessions once a week. Listening to songs and watching films in the language can make it more fun.
The farmers' market moves indoors for the winter months. Shoppers can still buy fresh bread, cheese and root vegetables every Saturday. Hot drinks are sold near the entrance.
Sunflowers turn their heads to follow the sun when they are young. This helps them collect more light and grow faster. Once they are fully grown, most of them face east.
A small fire broke out in the kitchen of a restaurant on Friday night. The staff used an extinguisher before the fire spread. No one was hurt, and the restaurant reopened the next day.
Grace trained for six months to run her first marathon. She ran four times a week and slowly increased the distance. On race day, she finished in just under five hours.
Volcanoes form where hot melted rock rises from deep inside the Earth. When pressure builds up, the rock can burst out as lava, ash and gas. Some volcanoes erupt often, while others stay quiet for centuries.
The local swimming pool is offering free lessons for adults this summer. Many adults never learned to swim as children. The lessons are held on weekday evenings.
Ants live in large colonies with a clear division of work. Some ants look after the young, while others gather food or guard the nest. The queen's main job is to lay eggs.
The company has decided to let employees work from home two days a week. Managers hope it will reduce travel time and improve morale. The office will be redesigned with more shared desks.
My grandfather kept every letter he ever received. After he died, we found hundreds of them in boxes in the attic. Reading them felt like discovering a side of him we never knew.
Tea was first drunk in China thousands of years ago. It later spread to Japan, India and Europe. Today it is one of the most popular drinks in the world.
A strong wind knocked down several trees in the park overnight. Workers closed the main path while they cleared the branches. The park is expected to reopen fully by Thursday.
Bats are the only mammals that can truly fly. Many of them find their way in the dark using echoes. They send out high sounds and listen for the echoes bouncing back from objects.
The bookshop on the corner has been open for sixty years. It is run by the same family, now in its third generation. Regular customers say the owners always know exactly what to recommend.
Drinking enough water is important for the body. Water helps control body temperature and carries nutrients to cells. Most people need more on hot days or after exercise.
The village holds a pumpkin festival every October. Farmers compete to grow the heaviest pumpkin, and children carve faces into smaller ones. The winner last year weighed more than three hundred kilograms.
Noah wanted a dog, but his parents said he had to prove he was responsible. For a month, he walked the neighbour's dog every afternoon. At the end of the month, they took him to the animal shelter.
Coral reefs are home to about a quarter of all sea creatures. They grow very slowly and are easily damaged by warmer water. Scientists are testing ways to help reefs recover.
The city's buses will be free on Sundays starting next month. The council hopes the change will encourage people to leave their cars at home. The plan will be reviewed after one year.
Bread goes stale because the starch inside it slowly hardens. Keeping bread in the fridge actually makes this happen faster. Freezing it is a better way to keep it fresh.
The students built a small weather station on the school roof. It measures temperature, wind speed and rainfall every hour. The data is shown on a screen in the school hall.
Kenji moved to a new city for work and did not know anyone. He joined a climbing club and a weekly cooking class. Within a few months, he had a group of close friends.
Spiders are not insects. Insects have six legs and three body parts, while spiders have eight legs and two body parts. Most spiders are harmless to people.
The hospital has opened a garden where patients can sit outside. Doctors say fresh air and plants can help people feel calmer. The garden was built by volunteers over two summers.
Sea turtles return to the same beaches where they hatched to lay their own eggs. Scientists think they use the Earth's magnetic field to find their way. The journey can be thousands of kilometres long.
Our office switched to a four-day working week as a trial. Productivity stayed the same, and fewer people called in sick. The trial has now been extended for another year.
The first bicycles had no pedals. Riders pushed themselves along with their feet. Pedals, chains and rubber tyres came later and made cycling much easier.
A heavy snowfall closed schools across the region on Monday. Children spent the day building snowmen and sledging. Roads were cleared by the evening.
Carrots were not always orange. Early carrots were purple or yellow. Farmers in the Netherlands grew orange carrots a few hundred years ago, and the colour became popular.
The community centre runs a repair cafe once a month. Volunteers help people fix broken lamps, toasters and clothes for free. The aim is to throw away less and learn new skills.
Owls can turn their heads much further than people can. Their eyes cannot move in their sockets, so turning the head is the only way to look around. Special blood vessels keep blood flowing while they turn.
Priya saved her pocket money for a year to buy a telescope. On the first clear night, she saw the rings of Saturn. She now wants to study astronomy at university.
Apples float because a quarter of their volume is air. That is why bobbing for apples works as a party game. Pears, on the other hand, usually sink.
The supermarket has stopped giving out free plastic bags. Shoppers can bring their own bags or buy a reusable one at the till. The store says it has already saved millions of bags.
The library's reading challenge asks children to read ten books over the summer. Each child who finishes gets a certificate and a small prize. More than five hundred children signed up this year.
Lightning is a giant spark of electricity in the sky. It heats the air so quickly that the air explodes outward, making the sound we call thunder. Light travels faster than sound, so we see the flash first.
After the factory closed, the building stood empty for ten years. A group of artists then turned it into studios and a small gallery. Today it is one of the busiest places in town.
Goldfish can live for more than twenty years if they are well cared for. They need a large tank with clean water and a filter. Small bowls are not suitable for them.
The mountain path is steep but well marked. Hikers should bring water, a map and warm clothes, even in summer. The view from the top is worth the effort.
Mateo's football team lost every match in its first season. The coach focused on teamwork and fitness instead of winning. In the second season, the team reached the final.
The human body has more than six hundred muscles. Muscles work in pairs: one pulls while the other relaxes. Regular exercise keeps them strong as we age.
The ferry to the island runs three times a day in summer. In winter it runs only once a day, and not at all in bad weather. Visitors are advised to check the timetable before travelling.
A new study suggests that spending time in nature can lower stress. People who walked in a park for an hour felt calmer than those who walked along a busy road. The researchers want to repeat the study with more people.
Isla grows all her vegetables on a small balcony. She uses old buckets as pots and collects rainwater in a barrel. Last year she harvested more tomatoes than she could eat.
The oldest known musical instruments are flutes made of bird bone. They are more than forty thousand years old. They show that people have made music for a very long time.
The shop down the road now sells refills for soap, rice and pasta. Customers bring their own jars and pay by weight. The owner says business has doubled since she opened.
Cheetahs are the fastest land animals, but they cannot run fast for long. After a short sprint they need to rest and cool down. Because of this, they must get close to their prey before chasing it.
Our street held its first party in ten years. Neighbours brought food, children played games and someone set up a small stage for music. Many people met each other for the first time.
The Moon has no air, so there is no wind on its surface. Footprints left by astronauts decades ago are probably still there. Only a passing rock could disturb them.
The bakery's owner decided to give away unsold bread at the end of each day. A local shelter now collects it every evening. Nothing goes to waste anymore.
Hugo keeps a notebook in his pocket to write down ideas. He says his best ideas come while he is walking or waiting for the bus. Several of his short stories started as a single line in that notebook.
Salt has been used to preserve food for thousands of years. It draws water out of food, which makes it hard for bacteria to grow. Before fridges, salting meat and fish was common.
The school garden produces vegetables for the school kitchen. Pupils plant seeds in spring and harvest them in autumn. The cook says children are more willing to eat vegetables they grew themselves.
Whales sing songs that can travel for many kilometres under water. Male humpback whales sing long, complex songs that change slowly over the years. Scientists still do not fully understand why.
The council has opened a new cycle path along the river. It links the town centre with the university and the hospital. Cyclists no longer have to ride on the busy main road.
Anna found an old camera at a flea market for five euros. Inside was a film that had never been developed. The photos showed a family holiday from fifty years ago.
Snow looks white because it reflects almost all the light that hits it. Each snowflake is made of clear ice, but the many surfaces scatter light in all directions. Fresh snow can reflect up to ninety percent of sunlight.
The concert in the park was moved indoors because of the rain. Only half the audience fitted into the hall. The organisers have promised a second concert next month.
Dolphins sleep with one half of their brain at a time. The awake half keeps them breathing and watching for danger. After a while, the two halves switch.
""")

GAMES = _lines("""
chess
football
basketball
tennis
cricket
volleyball
checkers
Monopoly
Scrabble
rugby
badminton
baseball
table tennis
ice hockey
Go
backgammon
sudoku
snakes and ladders
bowling
golf
""")

ORGANS = _lines("""
the liver
the kidneys
the lungs
the brain
the stomach
the skin
the spleen
the pancreas
the small intestine
white blood cells
red blood cells
the spinal cord
tendons
the thyroid gland
the inner ear
the appendix
""")

HISTORY = _lines("""
the Industrial Revolution
the Renaissance
the invention of the printing press
the Silk Road
the first Moon landing
the fall of the Berlin Wall
the Roman Empire
the ancient Olympic Games
the invention of the telephone
the discovery of penicillin
the invention of farming
the building of the Panama Canal
the invention of writing
the Wright brothers' first flight
the Great Fire of London
the building of the pyramids in Egypt
the invention of the steam engine
the first voyage around the world
""")

DOCUMENTS = _lines("""
resignation letter
eulogy
wedding toast
product review
book report
letter to a newspaper
speech for a school election
lab report
condolence message
business plan
CV for my first job
travel blog post
newsletter for a sports club
short biography of my grandmother
reference letter for a former employee
formal invitation to a company event
""")

SUPPORT = _lines("""
is grieving
has just lost their job
is moving abroad
is stressed about exams
has just had a baby
is feeling lonely
is recovering from surgery
is starting a small business
is going through a breakup
has just moved to my city
is training for a marathon
is afraid of flying
""")
