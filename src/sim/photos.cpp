// Natural-image stimuli from photographs: decoding, luminance, area downsampling, tiling, selection, and the
// stimulus file. See photos.hpp for the pipeline and the file format.
#include "sim/photos.hpp"

#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/random.hpp"
#include "io/h5.hpp"

// libjpeg's header needs FILE and size_t declared first.
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <csetjmp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>

namespace v1sysid::sim {

namespace fs = std::filesystem;

// ---- the curated photo list ----------------------------------------------------------------------------

namespace {
constexpr const char* kSkimage = "python3-skimage";
constexpr const char* kLomiri = "lomiri-wallpapers-16.04";
constexpr const char* kGcompris = "gcompris-qt-data";
constexpr const char* kTuxtype = "tuxtype-data";
constexpr const char* kScribus = "scribus-template";
constexpr const char* kPalapeli = "palapeli-data";
constexpr const char* kLibjxl = "libjxl-testdata";
constexpr const char* kSklearn = "python3-sklearn";
constexpr const char* kTuxpaint = "tuxpaint-data";
constexpr const char* kPuzzleJigsaw = "puzzle-jigsaw";
constexpr const char* kMatplotlib = "python-matplotlib-data";
constexpr const char* kImagemagickDoc = "imagemagick-6-doc";
}  // namespace

const std::vector<PhotoSource>& curated_photos() {
  // The licence-clean combination of docs/stimuli/photo-survey.md: CC0, public-domain, CC-BY or permissive
  // photographs with a per-file or per-directory licence statement (where each is stated: the survey's
  // file list, docs/stimuli/photo-survey-files.tsv). Share-alike, copyleft and uncertain ones are left out.
  // gcompris-qt-data's paths lie in the folders env/extract-rcc.py unpacks its .rcc bundles into.
  //
  // The 22 photos reserved for test (20 %) spread over 10 packages and over subjects (animals, fish, tools,
  // food, buildings, landscape, plants, objects, a portrait); most are small (320 x 240 gcompris photos and
  // other photos under 1,000 px wide), because non-overlapping crops make the large photos the ones that
  // can supply the thousands of train/validation crops.
  static const std::vector<PhotoSource> photos = {
      {"camera", kSkimage, "usr/lib/python3/dist-packages/skimage/data/camera.png", "Lav Varshney", "CC0-1.0", false},
      {"astronaut", kSkimage, "usr/lib/python3/dist-packages/skimage/data/astronaut.png", "NASA", "public-domain",
       false},
      {"coffee", kSkimage, "usr/lib/python3/dist-packages/skimage/data/coffee.png", "Rachel Michetti", "CC0-1.0", true},
      {"chelsea", kSkimage, "usr/lib/python3/dist-packages/skimage/data/chelsea.png", "Stefan van der Walt", "CC0-1.0",
       true},
      {"rocket", kSkimage, "usr/lib/python3/dist-packages/skimage/data/rocket.jpg", "SpaceX", "public-domain", false},
      {"hubble_deep_field", kSkimage, "usr/lib/python3/dist-packages/skimage/data/hubble_deep_field.jpg", "NASA",
       "public-domain", false},
      {"retina", kSkimage, "usr/lib/python3/dist-packages/skimage/data/retina.jpg",
       "Wikimedia Commons (Fundus_photograph_of_normal_left_eye.jpg)", "CC0-1.0", false},
      {"brick", kSkimage, "usr/lib/python3/dist-packages/skimage/data/brick.png", "CC0Textures (Bricks25)", "CC0-1.0",
       false},
      {"grass", kSkimage, "usr/lib/python3/dist-packages/skimage/data/grass.png", "linolafett (DeviantArt Grass-01)",
       "CC0-1.0", false},
      {"gravel", kSkimage, "usr/lib/python3/dist-packages/skimage/data/gravel.png", "CC0Textures (Gravel04)", "CC0-1.0",
       false},
      {"clock_motion", kSkimage, "usr/lib/python3/dist-packages/skimage/data/clock_motion.png", "Stefan van der Walt",
       "public-domain", false},
      {"aitzgorri", kLomiri, "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi",
       "CC-BY-4.0", false},
      {"friends", kLomiri, "usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0",
       false},
      {"life", kLomiri, "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", false},
      {"picosdeeuropa", kLomiri, "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi",
       "CC-BY-4.0", false},
      {"Picture_0B", kLomiri, "usr/share/backgrounds/Picture_0B_by_freespace.jpg", "Trevor \"Freespace\"", "CC-BY-4.0",
       false},
      {"Picture_1A", kLomiri, "usr/share/backgrounds/Picture_1A_by_freespace.jpg", "Trevor \"Freespace\"", "CC-BY-4.0",
       true},
      {"seeding", kLomiri, "usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0",
       false},
      {"sunset", kLomiri, "usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0",
       false},
      {"Wine", kLomiri, "usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0", false},
      {"crocodile", kGcompris,
       "usr/share/gcompris-qt/rcc/explore_world_animals/gcompris/src/activities/explore_world_animals/resource/animals/"
       "crocodile.webp",
       "Kmanoj", "CC-BY-3.0", false},
      {"moose", kGcompris,
       "usr/share/gcompris-qt/rcc/explore_world_animals/gcompris/src/activities/explore_world_animals/resource/animals/"
       "moose.webp",
       "Ryan Hagerty", "public-domain", false},
      {"panda", kGcompris,
       "usr/share/gcompris-qt/rcc/explore_world_animals/gcompris/src/activities/explore_world_animals/resource/animals/"
       "panda.webp",
       "Aaron Logan", "CC-BY-1.0", false},
      {"dam2", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "dam2.webp",
       "László Szalai", "public-domain", false},
      {"dam3", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "dam3.webp",
       "David Brodbeck", "CC-BY-2.0", false},
      {"solar1", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "solar1.webp",
       "Nadya Peek", "CC-BY-2.0", false},
      {"solar2", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "solar2.webp",
       "Fluffyarse", "CC0-1.0", true},
      {"solar3", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "solar3.webp",
       "Richard Gifford", "CC-BY-2.0", false},
      {"solar4", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "solar4.webp",
       "ENERGY.GOV", "public-domain", false},
      {"solar7", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "solar7.webp",
       "mattbuck", "CC-BY-2.0", false},
      {"windmill", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "windmill.webp",
       "G-Man", "public-domain", false},
      {"windmill12", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "windmill12.webp",
       "Jean-Pol GRANDMONT", "CC-BY-2.0", true},
      {"windmill14", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "windmill14.webp",
       "Francesco Pappalardo", "CC-BY-2.0", false},
      {"windmill7", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/renewable/"
       "windmill7.webp",
       "J.c.houd", "CC-BY-1.0", false},
      {"brandenburgGate", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/monuments/"
       "brandenburgGate.webp",
       "freakyman", "CC-BY-2.0", false},
      {"greatWall", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/monuments/"
       "greatWall.webp",
       "Hao Wei", "CC-BY-2.0", true},
      {"leMusee", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/monuments/"
       "leMusee.webp",
       "Jean-Pierre Dalbéra", "CC-BY-2.0", false},
      {"leaningTowerOfPisa", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/monuments/"
       "leaningTowerOfPisa.webp",
       "Dan Kamminga", "CC-BY-2.0", false},
      {"mountRushmore", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/monuments/"
       "mountRushmore.webp",
       "Dean Franklin", "CC-BY-2.0", true},
      {"zimniPalace", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/monuments/"
       "zimniPalace.webp",
       "Dezidor", "CC-BY-3.0", false},
      {"bucket", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/others/"
       "bucket.webp",
       "MarlonBSB", "public-domain", false},
      {"buffetset", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/others/"
       "buffetset.webp",
       "Detweiler, Susan G.", "public-domain", false},
      {"igloo", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/others/"
       "igloo.webp",
       "U.S. National Oceanic and Atmospheric Administration", "public-domain", true},
      {"pan", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/others/"
       "pan.webp",
       "Suricata", "public-domain", false},
      {"pencil", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/others/"
       "pencil.webp",
       "Ole Palnatoke Andersen", "CC-BY-2.0", false},
      {"volleyball", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/others/"
       "volleyball.webp",
       "Starlight~commonswiki", "public-domain", true},
      {"cuttingTool", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "cuttingTool.webp",
       "Ivob", "public-domain", false},
      {"hammer3", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "hammer3.webp",
       "Evan-Amos", "public-domain", true},
      {"hammer5", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "hammer5.webp",
       "Dmitry G", "public-domain", false},
      {"measuringTape3", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "measuringTape3.webp",
       "Pink Sherbet Photography", "CC-BY-2.0", false},
      {"measuringTape4", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "measuringTape4.webp",
       "Douglas Perkins", "CC0-1.0", false},
      {"multimeter2", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "multimeter2.webp",
       "Chabrez", "public-domain", false},
      {"nailCutter", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "nailCutter.webp",
       "Tripy~commonswiki", "public-domain", false},
      {"plier1", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "plier1.webp",
       "Baran Ivo", "public-domain", false},
      {"plier2", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "plier2.webp",
       "Dmitry G", "public-domain", false},
      {"scissors2", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "scissors2.webp",
       "Modeha", "CC-BY-1.0", false},
      {"screwDriver", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "screwDriver.webp",
       "Dmitry G", "public-domain", false},
      {"screwDriver2", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "screwDriver2.webp",
       "Dezertscorpion", "public-domain", false},
      {"sideCutter1", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "sideCutter1.webp",
       "M338", "public-domain", false},
      {"wrench", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "wrench.webp",
       "Dori", "public-domain", true},
      {"wrench1", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/tools/"
       "wrench1.webp",
       "Dori", "public-domain", false},
      {"fish1", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish1.webp",
       "Florin DUMITRESCU", "public-domain", false},
      {"fish14", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish14.webp",
       "suneko", "CC-BY-2.0", true},
      {"fish15", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish15.webp",
       "Ed Bierman", "CC-BY-2.0", false},
      {"fish2", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish2.webp",
       "Duane Raver", "public-domain", false},
      {"fish23", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish23.webp",
       "Duane Raver", "public-domain", false},
      {"fish24", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish24.webp",
       "Duane Raver", "public-domain", false},
      {"fish25", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish25.webp",
       "Necrophorus", "public-domain", false},
      {"fish26", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish26.webp",
       "Derek Keats", "CC-BY-2.0", false},
      {"fish27", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish27.webp",
       "Philippe Guillaume", "CC-BY-2.0", false},
      {"fish28", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish28.webp",
       "Derek Keats", "CC-BY-2.0", false},
      {"fish3", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish3.webp",
       "Elma", "CC-BY-2.0", true},
      {"fish4", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish4.webp",
       "Hadal", "public-domain", false},
      {"fish5", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish5.webp",
       "Duane Raver, U.S. Fish and Wildlife Service", "public-domain", false},
      {"fish8", kGcompris,
       "usr/share/gcompris-qt/rcc/categorization/gcompris/src/activities/categorization/resource/images/fishes/"
       "fish8.webp",
       "Hartley, William W", "public-domain", false},
      {"kcas0", kTuxtype, "usr/share/tuxtype/images/kcas0.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas1", kTuxtype, "usr/share/tuxtype/images/kcas1.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas2", kTuxtype, "usr/share/tuxtype/images/kcas2.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas3", kTuxtype, "usr/share/tuxtype/images/kcas3.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas4", kTuxtype, "usr/share/tuxtype/images/kcas4.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas5", kTuxtype, "usr/share/tuxtype/images/kcas5.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas6", kTuxtype, "usr/share/tuxtype/images/kcas6.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas7", kTuxtype, "usr/share/tuxtype/images/kcas7.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas8", kTuxtype, "usr/share/tuxtype/images/kcas8.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas9", kTuxtype, "usr/share/tuxtype/images/kcas9.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas10", kTuxtype, "usr/share/tuxtype/images/kcas10.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"kcas11", kTuxtype, "usr/share/tuxtype/images/kcas11.jpg",
       "NOAA / U.S. Fish and Wildlife Service (via gimp-savvy.com photo archive)", "public-domain", false},
      {"hidden", kTuxtype, "usr/share/tuxtype/images/hidden.jpg",
       "NOAA / USFWS (README: \"royalty free from same places as *cas*\")", "public-domain", true},
      {"br2_brightness", kScribus, "usr/share/scribus/templates/br2/brightness.jpg",
       "Riku Leino (template author; photographer not named)", "public-domain", false},
      {"br2_halfmoon", kScribus, "usr/share/scribus/templates/br2/halfmoon.jpg",
       "Riku Leino (template author; photographer not named)", "public-domain", true},
      {"br2_moon", kScribus, "usr/share/scribus/templates/br2/moon.jpg",
       "Riku Leino (template author; photographer not named)", "public-domain", false},
      {"br2_nature", kScribus, "usr/share/scribus/templates/br2/nature.jpg",
       "Riku Leino (template author; photographer not named)", "public-domain", false},
      {"br2_sunset", kScribus, "usr/share/scribus/templates/br2/sunset.jpg",
       "Riku Leino (template author; photographer not named)", "public-domain", false},
      {"cal2_moon", kScribus, "usr/share/scribus/templates/cal2/moon.jpg",
       "Riku Leino (template author; photographer not named)", "public-domain", false},
      {"menu1_teriyaki", kScribus, "usr/share/scribus/templates/menu1/teriyaki.png",
       "Riku Leino (template author; photographer not named)", "public-domain", true},
      {"menu2_pizza", kScribus, "usr/share/scribus/templates/menu2/pizza.jpg",
       "Riku Leino (template author; photographer not named)", "public-domain", false},
      {"nl1-bw_kites-bw", kScribus, "usr/share/scribus/templates/nl1-bw/kites-bw.png",
       "Riku Leino (template author; photographer not named)", "public-domain", false},
      {"wesaturate_macan", kLibjxl, "usr/share/libjxl-testdata/external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png",
       "keong macan (wesaturate.com)", "CC0-1.0", false},
      {"wesaturate_riaphotographs", kLibjxl,
       "usr/share/libjxl-testdata/external/wesaturate/500px/tmshre_riaphotographs_srgb8.png",
       "riaphotographs (wesaturate.com)", "CC0-1.0", false},
      {"wesaturate_bliznaca", kLibjxl, "usr/share/libjxl-testdata/external/wesaturate/500px/u76c0g_bliznaca_srgb8.png",
       "bliznaca (wesaturate.com)", "CC0-1.0", true},
      {"sklearn_china", kSklearn, "usr/lib/python3/dist-packages/sklearn/datasets/images/china.jpg",
       "danielbuechele (Flickr 6061409035)", "CC-BY-2.0", false},
      {"sklearn_flower", kSklearn, "usr/lib/python3/dist-packages/sklearn/datasets/images/flower.jpg",
       "vultilion (Flickr 6056698931; README line says danielbuechele)", "CC-BY-2.0", true},
      {"cincinnati-bridge", kPalapeli, "usr/share/palapeli/collection/cincinnati-bridge.jpg", "Derek Jensen",
       "public-domain", false},
      {"citrus-fruits", kPalapeli, "usr/share/palapeli/collection/citrus-fruits.jpg", "US Department of Agriculture",
       "public-domain", false},
      {"european-honey-bee", kPalapeli, "usr/share/palapeli/collection/european-honey-bee.jpg", "John Severns",
       "public-domain", false},
      {"skyline-sf-dusk-back", kTuxpaint, "usr/share/tuxpaint/starters/skyline-sf-dusk-back.jpeg",
       "Rich Bourgerie, NOAA (image line1989)", "public-domain", false},
      {"reef-back", kTuxpaint, "usr/share/tuxpaint/starters/reef-back.png",
       "Thomas K. Gibson, NOAA / Florida Keys NMS (image reef2583)", "public-domain", true},
      {"cat-animal-cat-portrait-mackerel", kPuzzleJigsaw,
       "usr/share/puzzle-jigsaw/samples/cat-animal-cat-portrait-mackerel.jpg", "Pexels (2016-2017)", "CC0-1.0", false},
      {"pexels-photo-302304", kPuzzleJigsaw, "usr/share/puzzle-jigsaw/samples/pexels-photo-302304.jpeg",
       "Pexels (2016-2017)", "CC0-1.0", true},
      {"grace_hopper", kMatplotlib, "usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg",
       "U.S. Navy (official portrait of Grace Hopper, Wikimedia Commons)", "public-domain", true},
      {"bluebells_lin", kImagemagickDoc, "usr/share/doc/imagemagick-6-common/html/images/bluebells_lin.jpg",
       "ImageMagick Studio LLC", "ImageMagick (Apache-2.0-style)", true},
  };
  return photos;
}

std::string default_photo_cache() {
  const char* env = std::getenv("V1SYSID_PHOTO_CACHE");
  return (env && *env) ? std::string(env) : std::string("/var/cache/v1sysid/photos");
}

// ---- decoding ----------------------------------------------------------------------------------------
//
// libjpeg and libpng report fatal errors through a callback that must not return; they are C libraries
// built without unwind tables, so the callback longjmps back instead of throwing. The functions that call
// setjmp hold only trivially destructible locals (the C++ containers belong to the caller), which keeps the
// setjmp/longjmp pair well defined in C++.

namespace {

struct DecodedPixels {
  int width = 0;
  int height = 0;
  int channels = 0;                 // 1 (grey) or 3 (RGB), 8 bits each
  std::vector<unsigned char> data;  // (height, width, channels)
};

struct JpegErrorState {
  jpeg_error_mgr manager;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_jpeg_error(j_common_ptr cinfo) {
  auto* state = reinterpret_cast<JpegErrorState*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, state->message);
  std::longjmp(state->jump, 1);
}

// Counts warnings (corrupt or truncated data, which libjpeg would otherwise patch over with grey) silently;
// the caller turns any warning into an error.
void on_jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) {
    auto* state = reinterpret_cast<JpegErrorState*>(cinfo->err);
    if (cinfo->err->num_warnings == 0) (*cinfo->err->format_message)(cinfo, state->message);
    cinfo->err->num_warnings++;
  }
}

bool run_jpeg_decode(std::FILE* file, jpeg_decompress_struct* cinfo, JpegErrorState* state, DecodedPixels* out) {
  cinfo->err = jpeg_std_error(&state->manager);
  state->manager.error_exit = on_jpeg_error;
  state->manager.emit_message = on_jpeg_message;
  state->message[0] = '\0';
  if (setjmp(state->jump)) {
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  jpeg_create_decompress(cinfo);
  jpeg_stdio_src(cinfo, file);
  jpeg_read_header(cinfo, TRUE);
  if (cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK) {
    std::snprintf(state->message, sizeof state->message, "CMYK JPEG is not supported");
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  cinfo->out_color_space = cinfo->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(cinfo);
  out->width = static_cast<int>(cinfo->output_width);
  out->height = static_cast<int>(cinfo->output_height);
  out->channels = cinfo->output_components;
  const size_t row_bytes = static_cast<size_t>(out->width) * static_cast<size_t>(out->channels);
  out->data.resize(row_bytes * static_cast<size_t>(out->height));
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = out->data.data() + row_bytes * cinfo->output_scanline;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  const bool clean = cinfo->err->num_warnings == 0;
  jpeg_destroy_decompress(cinfo);
  return clean;
}

struct PngErrorState {
  std::jmp_buf jump;
  char message[256];
};

void on_png_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", message);
  std::longjmp(state->jump, 1);
}

void on_png_warning(png_structp, png_const_charp) {}  // benign (colour-profile notes and the like)

bool run_png_decode(std::FILE* file, PngErrorState* state, DecodedPixels* out) {
  state->message[0] = '\0';
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, state, on_png_error, on_png_warning);
  if (!png) {
    std::snprintf(state->message, sizeof state->message, "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(state->message, sizeof state->message, "out of memory");
    return false;
  }
  if (setjmp(state->jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_init_io(png, file);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (bit_depth == 16) png_set_scale_16(png);  // v * 255 / 65535, rounded
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->width = static_cast<int>(png_get_image_width(png, info));
  out->height = static_cast<int>(png_get_image_height(png, info));
  out->channels = png_get_channels(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  out->data.resize(row_bytes * static_cast<size_t>(out->height));
  for (int pass = 0; pass < passes; ++pass) {
    for (int y = 0; y < out->height; ++y)
      png_read_row(png, out->data.data() + row_bytes * static_cast<size_t>(y), nullptr);
  }
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// Decodes a whole WebP file (lossy or lossless; an alpha channel is dropped, as for PNG) to RGB. Returns an
// empty message on success.
std::string run_webp_decode(std::FILE* file, DecodedPixels* out) {
  std::vector<uint8_t> bytes;
  uint8_t buffer[1 << 16];
  for (size_t got; (got = std::fread(buffer, 1, sizeof buffer, file)) > 0;)
    bytes.insert(bytes.end(), buffer, buffer + got);
  if (std::ferror(file)) return "read error";
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) return "bad WebP header";
  if (features.has_animation) return "animated WebP is not supported";
  out->width = features.width;
  out->height = features.height;
  out->channels = 3;
  const size_t row_bytes = 3 * static_cast<size_t>(out->width);
  out->data.resize(row_bytes * static_cast<size_t>(out->height));
  if (!WebPDecodeRGBInto(bytes.data(), bytes.size(), out->data.data(), out->data.size(), static_cast<int>(row_bytes)))
    return "corrupt or truncated WebP data";
  return "";
}

}  // namespace

GrayImage decode_photo(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file)
    throw IoError("cannot open photo", path, "check that the file exists and is readable (env/fetch-photos.sh)");
  unsigned char magic[12] = {0};
  const size_t got = std::fread(magic, 1, sizeof magic, file.get());
  std::rewind(file.get());
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  const bool is_png = got >= 8 && std::equal(magic, magic + 8, kPng);
  const bool is_jpeg = got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF;
  const bool is_webp = got == 12 && std::equal(magic, magic + 4, "RIFF") && std::equal(magic + 8, magic + 12, "WEBP");

  DecodedPixels decoded;
  if (is_jpeg) {
    jpeg_decompress_struct cinfo;
    JpegErrorState state;
    if (!run_jpeg_decode(file.get(), &cinfo, &state, &decoded)) {
      throw DataError(std::string("corrupt, truncated or unsupported JPEG (") + state.message + ")", path,
                      "re-run env/fetch-photos.sh to unpack a fresh copy");
    }
  } else if (is_png) {
    PngErrorState state;
    if (!run_png_decode(file.get(), &state, &decoded)) {
      throw DataError(std::string("corrupt or truncated PNG (") + state.message + ")", path,
                      "re-run env/fetch-photos.sh to unpack a fresh copy");
    }
  } else if (is_webp) {
    const std::string message = run_webp_decode(file.get(), &decoded);
    if (!message.empty()) {
      throw DataError("corrupt, truncated or unsupported WebP (" + message + ")", path,
                      "re-run env/fetch-photos.sh to unpack a fresh copy");
    }
  } else {
    throw DataError("not a JPEG, PNG or WebP file (unknown signature)", path,
                    "only JPEG, PNG and WebP photos are supported");
  }
  if (decoded.width <= 0 || decoded.height <= 0 || (decoded.channels != 1 && decoded.channels != 3)) {
    throw DataError("photo has no pixels or an unexpected channel count (" + std::to_string(decoded.channels) + ")",
                    path, "only grey and RGB JPEG/PNG/WebP photos are supported");
  }

  GrayImage image;
  image.width = decoded.width;
  image.height = decoded.height;
  const size_t n = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  image.pixels.resize(n);
  const unsigned char* src = decoded.data.data();
  if (decoded.channels == 1) {
    for (size_t i = 0; i < n; ++i) image.pixels[i] = static_cast<float>(src[i]);
  } else {
    for (size_t i = 0; i < n; ++i) {
      image.pixels[i] = rec601_luminance(src[3 * i], src[3 * i + 1], src[3 * i + 2]);
    }
  }
  return image;
}

// ---- area downsampling -------------------------------------------------------------------------------

namespace {

// For each output index: the first input index it overlaps and the weights of the inputs it overlaps.
// Positions are measured in units of 1/factor_den input pixels, so every interval end is an integer.
struct AxisWeights {
  std::vector<int> first;
  std::vector<size_t> offset;  // into weights; size out + 1
  std::vector<double> weights;
};

AxisWeights area_axis_weights(int out_size, int64_t factor_num, int64_t factor_den) {
  AxisWeights w;
  w.first.resize(static_cast<size_t>(out_size));
  w.offset.resize(static_cast<size_t>(out_size) + 1, 0);
  for (int j = 0; j < out_size; ++j) {
    const int64_t start = j * factor_num;  // output pixel j covers [start, end) in 1/den units
    const int64_t end = (j + 1) * factor_num;
    const int64_t k_first = start / factor_den;
    const int64_t k_last = (end - 1) / factor_den;
    w.first[static_cast<size_t>(j)] = static_cast<int>(k_first);
    for (int64_t k = k_first; k <= k_last; ++k) {
      const int64_t overlap = std::min(end, (k + 1) * factor_den) - std::max(start, k * factor_den);
      w.weights.push_back(static_cast<double>(overlap) / static_cast<double>(factor_num));
    }
    w.offset[static_cast<size_t>(j) + 1] = w.weights.size();
  }
  return w;
}

}  // namespace

GrayImage area_downsample(const GrayImage& in, int64_t factor_num, int64_t factor_den) {
  if (factor_num <= 0 || factor_den <= 0 || factor_num < factor_den) {
    throw DataError(
        "area_downsample factor " + std::to_string(factor_num) + "/" + std::to_string(factor_den) + " is not >= 1",
        "sim::area_downsample", "only downsampling is supported");
  }
  GrayImage out;
  out.width = static_cast<int>(static_cast<int64_t>(in.width) * factor_den / factor_num);
  out.height = static_cast<int>(static_cast<int64_t>(in.height) * factor_den / factor_num);
  out.pixels.assign(static_cast<size_t>(out.width) * static_cast<size_t>(out.height), 0.0f);
  if (out.width == 0 || out.height == 0) return out;
  const AxisWeights wx = area_axis_weights(out.width, factor_num, factor_den);
  const AxisWeights wy = area_axis_weights(out.height, factor_num, factor_den);
  // Box averaging is separable: the overlap area of two rectangles is the product of the 1-D overlaps.
  const int rows_used = wy.first.back() + static_cast<int>(wy.offset.back() - wy.offset[wy.offset.size() - 2]);
  std::vector<double> horizontal(static_cast<size_t>(rows_used) *
                                 static_cast<size_t>(out.width));  // (rows_used, out.width)
  for (int y = 0; y < rows_used; ++y) {
    const float* row = in.pixels.data() + static_cast<size_t>(y) * static_cast<size_t>(in.width);
    double* dst = horizontal.data() + static_cast<size_t>(y) * static_cast<size_t>(out.width);
    for (int j = 0; j < out.width; ++j) {
      double sum = 0;
      const float* src = row + wx.first[static_cast<size_t>(j)];
      for (size_t t = wx.offset[static_cast<size_t>(j)]; t < wx.offset[static_cast<size_t>(j) + 1]; ++t) {
        sum += wx.weights[t] * static_cast<double>(*src++);
      }
      dst[j] = sum;
    }
  }
  std::vector<double> column(static_cast<size_t>(out.width));
  for (int i = 0; i < out.height; ++i) {
    std::fill(column.begin(), column.end(), 0.0);
    int y = wy.first[static_cast<size_t>(i)];
    for (size_t t = wy.offset[static_cast<size_t>(i)]; t < wy.offset[static_cast<size_t>(i) + 1]; ++t, ++y) {
      const double* src = horizontal.data() + static_cast<size_t>(y) * static_cast<size_t>(out.width);
      for (int j = 0; j < out.width; ++j) column[static_cast<size_t>(j)] += wy.weights[t] * src[j];
    }
    float* dst = out.pixels.data() + static_cast<size_t>(i) * static_cast<size_t>(out.width);
    for (int j = 0; j < out.width; ++j) dst[j] = static_cast<float>(column[static_cast<size_t>(j)]);
  }
  return out;
}

// ---- tiling ------------------------------------------------------------------------------------------

CropStats crop_stats(const float* pixels, int height, int width, int row_stride) {
  double sum = 0, sum_sq = 0;
  for (int y = 0; y < height; ++y) {
    const float* row = pixels + static_cast<size_t>(y) * static_cast<size_t>(row_stride);
    for (int x = 0; x < width; ++x) {
      sum += row[x];
      sum_sq += static_cast<double>(row[x]) * row[x];
    }
  }
  const double n = static_cast<double>(height) * width;
  CropStats s;
  s.mean = sum / n;
  s.sd = std::sqrt(std::max(0.0, sum_sq / n - s.mean * s.mean));
  return s;
}

std::vector<std::pair<int, int>> tile_positions(const GrayImage& image, const CropOptions& options) {
  // Stride = crop size, so that the crops of one scale do not overlap (the selection keeps crops of
  // different scales apart).
  std::vector<std::pair<int, int>> positions;
  for (int y = 0; y + options.height <= image.height; y += options.height) {
    for (int x = 0; x + options.width <= image.width; x += options.width) {
      const float* corner = image.pixels.data() + static_cast<size_t>(y) * static_cast<size_t>(image.width) + x;
      if (crop_stats(corner, options.height, options.width, image.width).sd >= options.min_sd) {
        positions.emplace_back(x, y);
      }
    }
  }
  return positions;
}

bool crops_overlap(const PhotoCrop& a, const PhotoCrop& b, int height, int width) {
  // Scaled pixel i covers [i, i + 1) * photo_width / scaled_width of the photo (area_downsample), and the
  // photo width is common to both crops, so comparing x_a / w_a with x_b / w_b is exact after
  // cross-multiplying. Rectangles that only touch do not overlap.
  const int64_t wa = a.scaled_width, wb = b.scaled_width;
  const auto apart = [&](int64_t a0, int64_t b0, int64_t size) {
    return (a0 + size) * wb <= b0 * wa || (b0 + size) * wa <= a0 * wb;
  };
  return !apart(a.x, b.x, width) && !apart(a.y, b.y, height);
}

// ---- seeded selection --------------------------------------------------------------------------------

namespace {

// Seeds of independent streams derived from one user seed (SplitMix64 finaliser).
uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  return splitmix64_mix(seed + kSplitMix64Gamma * (stream + 1));
}

// Unbiased draw from [0, bound) by rejection; unlike std::uniform_int_distribution its sequence is the
// same with every standard library.
uint64_t draw_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return r % bound;
}

double draw_unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }  // [0, 1)

template <class T> void seeded_shuffle(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[draw_below(rng, i)]);
}

// A crop that passed the contrast rule: which scaled photo, and where.
struct Candidate {
  int photo;   // index into curated_photos()
  int scaled;  // index into the list of scaled photos
  PhotoCrop crop;
};

// Selects candidates balanced over source photos such that no two crops of one photo overlap in the
// photo's own coordinates, across scales too; returns them in selection order (the caller keeps the first
// `count`: stopping there gives the same crops). Every photo (in a seeded random order) gives one crop per
// round; within a photo the scale that has covered the least of the photo's area so far gives it (ties: the
// finest scale), each scale's crops in seeded random order, skipping any that overlaps a crop already chosen
// from the photo. Equal area per scale keeps all scales in the set without letting coarse crops, each of
// which would block up to (factor ratio)^2 fine ones, use up the photos; taking scales in turn by count
// instead leaves about 3,500 crops from the 111 photos instead of about 7,900. Without the balance over
// photos the largest photos at their finest scale would make up most of the set.
std::vector<Candidate> select_balanced(const std::vector<Candidate>& candidates, int height, int width,
                                       std::mt19937_64& rng) {
  struct Scale {
    std::vector<Candidate> crops;  // shuffled
    size_t next = 0;               // next untried crop
    long taken = 0;
    int64_t scaled_width = 0;
    // Area of the photo covered so far, in units of (photo width)^2 / (crop area): taken / scaled_width^2.
    double area() const { return static_cast<double>(taken) / static_cast<double>(scaled_width * scaled_width); }
  };
  struct Photo {
    std::vector<Scale> scales;
    std::vector<PhotoCrop> chosen;
  };
  std::vector<Photo> photos;
  std::map<int, size_t> photo_slot;                     // photo -> index into photos
  std::map<int, std::pair<size_t, size_t>> scale_slot;  // scaled -> (photo slot, scale slot)
  for (const Candidate& c : candidates) {
    auto found = scale_slot.find(c.scaled);
    if (found == scale_slot.end()) {
      auto [p, added] = photo_slot.emplace(c.photo, photos.size());
      if (added) photos.emplace_back();
      Photo& photo = photos[p->second];
      photo.scales.emplace_back();
      photo.scales.back().scaled_width = c.crop.scaled_width;
      found = scale_slot.emplace(c.scaled, std::make_pair(p->second, photo.scales.size() - 1)).first;
    }
    photos[found->second.first].scales[found->second.second].crops.push_back(c);
  }
  for (auto& p : photos) {
    for (auto& scale : p.scales) seeded_shuffle(scale.crops, rng);
  }
  std::vector<size_t> order(photos.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  seeded_shuffle(order, rng);

  const auto take_one = [&](Photo& p) {
    std::vector<size_t> by_area(p.scales.size());
    for (size_t i = 0; i < by_area.size(); ++i) by_area[i] = i;
    std::sort(by_area.begin(), by_area.end(), [&](size_t i, size_t j) {
      if (p.scales[i].area() != p.scales[j].area()) return p.scales[i].area() < p.scales[j].area();
      return p.scales[i].scaled_width > p.scales[j].scaled_width;
    });
    for (size_t s : by_area) {
      Scale& scale = p.scales[s];
      while (scale.next < scale.crops.size()) {
        const Candidate& c = scale.crops[scale.next++];
        const bool free = std::none_of(p.chosen.begin(), p.chosen.end(), [&](const PhotoCrop& other) {
          return crops_overlap(c.crop, other, height, width);
        });
        if (!free) continue;  // stays blocked: chosen crops are never removed
        p.chosen.push_back(c.crop);
        ++scale.taken;
        return &c;
      }
    }
    return static_cast<const Candidate*>(nullptr);
  };

  std::vector<Candidate> selected;
  for (bool any = true; any;) {
    any = false;
    for (size_t i = 0; i < order.size(); ++i) {
      if (const Candidate* c = take_one(photos[order[i]])) {
        selected.push_back(*c);
        any = true;
      }
    }
  }
  return selected;
}

void validate_options(const StimulusOptions& o) {
  if (o.trainval_count < 0)
    throw ConfigError("count must be >= 0, got " + std::to_string(o.trainval_count), "--count", "");
  if (o.test_count < 0)
    throw ConfigError("test count must be >= 0, got " + std::to_string(o.test_count), "--test-count", "");
  if (o.crop.height < 2)
    throw ConfigError("crop height must be >= 2, got " + std::to_string(o.crop.height), "--height", "");
  if (o.crop.width < 2)
    throw ConfigError("crop width must be >= 2, got " + std::to_string(o.crop.width), "--width", "");
}

}  // namespace

// ---- photographs -------------------------------------------------------------------------------------

StimulusSet build_photo_stimuli(const StimulusOptions& options) {
  validate_options(options);
  const auto& catalogue = curated_photos();
  const std::string dir = options.photo_dir.empty() ? default_photo_cache() : options.photo_dir;
  const std::string fix =
      "run env/fetch-photos.sh (as root, or with V1SYSID_PHOTO_CACHE set to a writable folder) and pass that "
      "folder with --photos; '--procedural dead_leaves' makes a labelled non-photographic set instead";
  if (!fs::is_directory(dir)) throw IoError("photo cache not found", dir, fix);

  std::vector<int> chosen = options.photo_subset;
  if (chosen.empty()) {
    for (size_t i = 0; i < catalogue.size(); ++i) chosen.push_back(static_cast<int>(i));
  }
  for (int p : chosen) {
    if (p < 0 || p >= static_cast<int>(catalogue.size())) {
      throw ConfigError("photo index " + std::to_string(p) + " is not in the curated list",
                        "StimulusOptions::photo_subset", "");
    }
    const fs::path file =
        fs::path(dir) / catalogue[static_cast<size_t>(p)].package / catalogue[static_cast<size_t>(p)].relative_path;
    if (!fs::is_regular_file(file)) throw IoError("photo missing from the photo cache", file.string(), fix);
  }

  std::vector<int> widths = options.crop.scale_widths;
  std::sort(widths.begin(), widths.end());
  widths.erase(std::unique(widths.begin(), widths.end()), widths.end());

  // Every scaled photo stays in memory (about 1-2 Mpx each) so that only the selected crops are copied.
  struct Scaled {
    int photo;
    float factor;
    GrayImage image;
  };
  std::vector<Scaled> scaled;
  std::vector<Candidate> trainval, test;

  Progress progress("images: photos", static_cast<long>(chosen.size()));
  for (size_t c = 0; c < chosen.size(); ++c) {
    const PhotoSource& src = catalogue[static_cast<size_t>(chosen[c])];
    const GrayImage full = decode_photo((fs::path(dir) / src.package / src.relative_path).string());
    for (int w : widths) {
      if (w > full.width || w <= 0) continue;  // downsampling only
      GrayImage image = w == full.width ? full : area_downsample(full, full.width, w);
      const auto positions = tile_positions(image, options.crop);
      if (positions.empty()) continue;
      const int image_width = image.width;
      const int index = static_cast<int>(scaled.size());
      scaled.push_back({chosen[c], static_cast<float>(static_cast<double>(full.width) / w), std::move(image)});
      auto& pool = src.reserved_for_test ? test : trainval;
      for (const auto& [x, y] : positions) pool.push_back({chosen[c], index, {x, y, image_width}});
    }
    progress.update(static_cast<long>(c + 1), {{"trainval_crops", static_cast<double>(trainval.size())},
                                               {"test_crops", static_cast<double>(test.size())}});
  }

  std::mt19937_64 rng_trainval(derive_seed(options.seed, 0));
  std::mt19937_64 rng_test(derive_seed(options.seed, 1));
  const int crop_h = options.crop.height, crop_w = options.crop.width;
  trainval = select_balanced(trainval, crop_h, crop_w, rng_trainval);
  test = select_balanced(test, crop_h, crop_w, rng_test);
  const long available_trainval = static_cast<long>(trainval.size());
  const long available_test = static_cast<long>(test.size());
  if (available_trainval < options.trainval_count) {
    throw DataError("only " + std::to_string(available_trainval) +
                        " usable, non-overlapping train/validation crops of " + std::to_string(crop_h) + "x" +
                        std::to_string(crop_w) + " for --count " + std::to_string(options.trainval_count),
                    dir, "lower --count or the crop size");
  }
  if (available_test < options.test_count) {
    throw DataError("only " + std::to_string(available_test) + " usable, non-overlapping test crops of " +
                        std::to_string(crop_h) + "x" + std::to_string(crop_w) +
                        " (from the photos reserved for test) for --test-count " + std::to_string(options.test_count),
                    dir, "lower --test-count or the crop size");
  }
  // The selection order follows the rounds over photos; the rows should not.
  trainval.resize(static_cast<size_t>(options.trainval_count));
  test.resize(static_cast<size_t>(options.test_count));
  seeded_shuffle(trainval, rng_trainval);
  seeded_shuffle(test, rng_test);

  StimulusSet set;
  set.height = options.crop.height;
  set.width = options.crop.width;
  set.generator = kGeneratorPhotographs;
  set.seed = options.seed;
  set.min_crop_sd = options.crop.min_sd;
  set.available_trainval = available_trainval;
  set.available_test = available_test;
  for (const auto& p : catalogue) set.photos.push_back({p.name, p.relative_path, p.package, p.author, p.licence});
  const size_t crop_size = static_cast<size_t>(set.height) * static_cast<size_t>(set.width);
  set.images.resize((trainval.size() + test.size()) * crop_size);
  size_t row = 0;
  for (const auto* pool : {&trainval, &test}) {
    for (const Candidate& cand : *pool) {
      const Scaled& s = scaled[static_cast<size_t>(cand.scaled)];
      for (int y = 0; y < set.height; ++y) {
        const float* src = s.image.pixels.data() +
                           static_cast<size_t>(cand.crop.y + y) * static_cast<size_t>(s.image.width) + cand.crop.x;
        std::copy(
            src, src + set.width,
            set.images.begin() + static_cast<std::ptrdiff_t>(row * crop_size + static_cast<size_t>(y) * set.width));
      }
      set.split.push_back(pool == &test ? "test" : "trainval");
      set.photo_index.push_back(s.photo);
      set.scale.push_back(s.factor);
      set.position.push_back(cand.crop.x);
      set.position.push_back(cand.crop.y);
      set.scaled_width.push_back(cand.crop.scaled_width);
      ++row;
    }
  }
  progress.finish(std::to_string(trainval.size()) + " trainval + " + std::to_string(test.size()) + " test crops");
  return set;
}

// ---- dead leaves -------------------------------------------------------------------------------------

namespace {

// One dead-leaves image: discs placed front to back, each painting only pixels no earlier (nearer) disc
// covers, until every pixel is covered (the exact occlusion model, without drawing hidden discs).
void dead_leaves_image(std::mt19937_64& rng, int height, int width, float* out) {
  const double r_min = 1.0, r_max = 1.5 * std::max(height, width);
  const double a = 1.0 / (r_min * r_min), b = 1.0 / (r_max * r_max);
  std::vector<unsigned char> covered(static_cast<size_t>(height) * static_cast<size_t>(width), 0);
  size_t remaining = covered.size();
  float grey = 128.0f;
  for (int disc = 0; disc < 200000 && remaining > 0; ++disc) {
    const double r = 1.0 / std::sqrt(a - draw_unit(rng) * (a - b));  // p(r) ~ r^-3 on [r_min, r_max]
    const double cx = -r + draw_unit(rng) * (width + 2 * r);
    const double cy = -r + draw_unit(rng) * (height + 2 * r);
    grey = static_cast<float>(255.0 * draw_unit(rng));
    const int y0 = std::max(0, static_cast<int>(std::floor(cy - r))),
              y1 = std::min(height - 1, static_cast<int>(std::ceil(cy + r)));
    const int x0 = std::max(0, static_cast<int>(std::floor(cx - r))),
              x1 = std::min(width - 1, static_cast<int>(std::ceil(cx + r)));
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        const size_t i = static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x);
        const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (!covered[i] && dx * dx + dy * dy <= r * r) {
          covered[i] = 1;
          out[i] = grey;
          --remaining;
        }
      }
    }
  }
  for (size_t i = 0; i < covered.size(); ++i) {
    if (!covered[i]) out[i] = grey;  // practically never reached; keeps the output defined
  }
}

}  // namespace

StimulusSet build_dead_leaves_stimuli(const StimulusOptions& options) {
  validate_options(options);
  StimulusSet set;
  set.height = options.crop.height;
  set.width = options.crop.width;
  set.generator = kGeneratorDeadLeaves;
  set.seed = options.seed;
  set.min_crop_sd = options.crop.min_sd;
  const size_t crop_size = static_cast<size_t>(set.height) * static_cast<size_t>(set.width);
  const long total = options.trainval_count + options.test_count;
  set.images.resize(static_cast<size_t>(total) * crop_size);
  Progress progress("images: dead leaves", total);
  std::mt19937_64 rng_trainval(derive_seed(options.seed, 2));
  std::mt19937_64 rng_test(derive_seed(options.seed, 3));
  for (long n = 0; n < total; ++n) {
    const bool is_test = n >= options.trainval_count;
    float* out = set.images.data() + static_cast<size_t>(n) * crop_size;
    // Same contrast rule as for photographs; a single disc covering the whole image is redrawn.
    for (int attempt = 0;; ++attempt) {
      dead_leaves_image(is_test ? rng_test : rng_trainval, set.height, set.width, out);
      if (crop_stats(out, set.height, set.width, set.width).sd >= options.crop.min_sd || attempt >= 1000) break;
    }
    set.split.push_back(is_test ? "test" : "trainval");
    set.photo_index.push_back(-1);
    set.scale.push_back(1.0f);
    set.position.push_back(0);
    set.position.push_back(0);
    set.scaled_width.push_back(0);
    progress.update(n + 1);
  }
  progress.finish(std::to_string(options.trainval_count) + " trainval + " + std::to_string(options.test_count) +
                  " test images (procedural, not natural images)");
  return set;
}

// ---- the stimulus file -------------------------------------------------------------------------------

void write_stimuli(const StimulusSet& set, const std::string& path, bool force) {
  const hsize_t n = set.size(), h = static_cast<hsize_t>(set.height), w = static_cast<hsize_t>(set.width);
  if (set.images.size() != n * h * w || set.photo_index.size() != n || set.scale.size() != n ||
      set.position.size() != 2 * n) {
    throw DataError("stimulus set arrays disagree in length", path, "this is a bug in the caller of write_stimuli");
  }
  h5::File file = h5::File::create(path, force);
  file.write<float>("images", set.images, {n, h, w}, 256);
  file.write_strings("split", set.split);
  file.write<int32_t>("photo_index", set.photo_index, {n});
  file.write<float>("scale", set.scale, {n});
  file.write<int32_t>("position", set.position, {n, 2});
  // Sets made by hand (tests, tools) may leave scaled_width out; the overlap check then reports -1.
  if (!set.scaled_width.empty()) {
    if (set.scaled_width.size() != n)
      throw DataError("scaled_width has " + std::to_string(set.scaled_width.size()) + " entries for " +
                          std::to_string(n) + " images",
                      path, "this is a bug in the caller of write_stimuli");
    file.write<int32_t>("scaled_width", set.scaled_width, {n});
  }
  std::vector<std::string> name, rel, package, author, licence;
  for (const auto& p : set.photos) {
    name.push_back(p.name);
    rel.push_back(p.path);
    package.push_back(p.package);
    author.push_back(p.author);
    licence.push_back(p.licence);
  }
  file.create_group("photos");
  file.write_strings("photos/name", name);
  file.write_strings("photos/path", rel);
  file.write_strings("photos/package", package);
  file.write_strings("photos/author", author);
  file.write_strings("photos/licence", licence);
  file.write_attribute("/", "format_version", static_cast<int64_t>(kStimulusFormatVersion));
  file.write_attribute("/", "generator", set.generator);
  file.write_attribute("/", "seed", static_cast<int64_t>(set.seed));
  file.write_attribute("/", "min_crop_sd", set.min_crop_sd);
  // The numbers `v1sysid images` prints, for readers of the file (recomputable with summarize_stimuli).
  const StimulusSummary summary = summarize_stimuli(set);
  file.create_group("summary");
  for (const auto& [tier, t] :
       {std::pair<std::string, TierSummary>{"trainval", summary.trainval}, {"test", summary.test}}) {
    file.write_attribute("summary", tier + "_crops", static_cast<int64_t>(t.crops));
    file.write_attribute("summary", tier + "_photos", static_cast<int64_t>(t.photos));
    file.write_attribute("summary", tier + "_crops_per_photo_min", static_cast<int64_t>(t.min_per_photo));
    file.write_attribute("summary", tier + "_crops_per_photo_median", t.median_per_photo);
    file.write_attribute("summary", tier + "_crops_per_photo_max", static_cast<int64_t>(t.max_per_photo));
    file.write_attribute("summary", tier + "_effective_photos", t.effective_photos);
  }
  file.write_attribute("summary", "available_trainval_crops", static_cast<int64_t>(set.available_trainval));
  file.write_attribute("summary", "available_test_crops", static_cast<int64_t>(set.available_test));
  file.write_attribute("summary", "overlapping_crop_pairs", static_cast<int64_t>(summary.overlapping_pairs));
  file.write_attribute("summary", "photos_in_both_tiers", static_cast<int64_t>(summary.shared_photos));
  file.commit();
}

std::vector<int64_t> StimulusSet::indices(bool test) const {
  std::vector<int64_t> rows;
  for (size_t i = 0; i < split.size(); ++i) {
    if ((split[i] == "test") == test) rows.push_back(static_cast<int64_t>(i));
  }
  return rows;
}

StimulusSet read_stimuli(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    throw IoError("stimulus file not found", path, "make it with 'v1sysid images --out " + path + "'");
  }
  h5::File file = h5::File::open(path);
  if (!file.has_attribute("/", "format_version")) {
    throw DataError("not a v1sysid stimulus file (no format_version attribute)", path,
                    "make one with 'v1sysid images'");
  }
  const int64_t version = file.read_attribute_int("/", "format_version");
  if (version != kStimulusFormatVersion) {
    throw DataError("stimulus file format_version " + std::to_string(version) + " is not supported (expected " +
                        std::to_string(kStimulusFormatVersion) + ")",
                    path, "re-create it with this version's 'v1sysid images'");
  }
  for (const char* required : {"images", "split", "photo_index", "scale", "position"}) {
    if (!file.exists(required))
      throw DataError(std::string("missing dataset '") + required + "'", path, "re-create it with 'v1sysid images'");
  }
  StimulusSet set;
  set.path = path;
  h5::Shape shape;
  set.images = file.read<float>("images", &shape);
  if (shape.size() != 3)
    throw DataError("'images' must be [N, H, W]", path + ":images", "re-create it with 'v1sysid images'");
  const size_t n = shape[0];
  set.height = static_cast<int>(shape[1]);
  set.width = static_cast<int>(shape[2]);
  set.split = file.read_strings("split");
  set.photo_index = file.read<int32_t>("photo_index");
  set.scale = file.read<float>("scale");
  set.position = file.read<int32_t>("position");
  if (file.exists("scaled_width")) {  // absent in files written before the crops were kept apart
    set.scaled_width = file.read<int32_t>("scaled_width");
    if (set.scaled_width.size() != n)
      throw DataError("scaled_width does not have one entry per image", path, "re-create it with 'v1sysid images'");
  }
  if (set.split.size() != n || set.photo_index.size() != n || set.scale.size() != n || set.position.size() != 2 * n) {
    throw DataError("split/photo_index/scale/position do not have one entry per image", path,
                    "re-create it with 'v1sysid images'");
  }
  for (const auto& s : set.split) {
    if (s != "trainval" && s != "test")
      throw DataError("split value '" + s + "' is neither 'trainval' nor 'test'", path + ":split",
                      "re-create it with 'v1sysid images'");
  }
  if (file.exists("photos/name")) {
    const auto name = file.read_strings("photos/name");
    const auto rel =
        file.exists("photos/path") ? file.read_strings("photos/path") : std::vector<std::string>(name.size());
    const auto package = file.read_strings("photos/package");
    const auto author = file.read_strings("photos/author");
    const auto licence = file.read_strings("photos/licence");
    if (rel.size() != name.size() || package.size() != name.size() || author.size() != name.size() ||
        licence.size() != name.size()) {
      throw DataError("photos/* datasets differ in length", path, "re-create it with 'v1sysid images'");
    }
    for (size_t i = 0; i < name.size(); ++i) set.photos.push_back({name[i], rel[i], package[i], author[i], licence[i]});
  }
  for (int32_t p : set.photo_index) {
    if (p < -1 || p >= static_cast<int32_t>(set.photos.size())) {
      throw DataError("photo_index " + std::to_string(p) + " has no row in photos/", path + ":photo_index",
                      "re-create it with 'v1sysid images'");
    }
  }
  set.generator = file.read_attribute_string("/", "generator");
  set.seed = static_cast<uint64_t>(file.read_attribute_int("/", "seed"));
  if (file.has_attribute("/", "min_crop_sd")) set.min_crop_sd = file.read_attribute_double("/", "min_crop_sd");
  return set;
}

// ---- summary -----------------------------------------------------------------------------------------

StimulusSummary summarize_stimuli(const StimulusSet& set) {
  StimulusSummary summary;
  std::map<int32_t, long> per_photo[2];  // [trainval, test]: photo -> crops
  for (size_t i = 0; i < set.size(); ++i) {
    if (set.photo_index[i] >= 0) ++per_photo[set.split[i] == "test"][set.photo_index[i]];
  }
  for (int tier = 0; tier < 2; ++tier) {
    TierSummary& t = tier ? summary.test : summary.trainval;
    std::vector<long> counts;
    for (const auto& [photo, count] : per_photo[tier]) counts.push_back(count);
    std::sort(counts.begin(), counts.end());
    t.photos = static_cast<long>(counts.size());
    for (long c : counts) t.crops += c;
    if (counts.empty()) continue;
    t.min_per_photo = counts.front();
    t.max_per_photo = counts.back();
    const size_t m = counts.size() / 2;
    t.median_per_photo =
        counts.size() % 2 ? static_cast<double>(counts[m]) : 0.5 * static_cast<double>(counts[m - 1] + counts[m]);
    double simpson = 0;  // sum of squared crop shares
    for (long c : counts) simpson += static_cast<double>(c) * static_cast<double>(c);
    t.effective_photos = static_cast<double>(t.crops) * static_cast<double>(t.crops) / simpson;
  }
  for (const auto& [photo, count] : per_photo[1]) summary.shared_photos += per_photo[0].count(photo) ? 1 : 0;
  if (set.scaled_width.size() != set.size()) return summary;  // older file: overlap unknown (-1)
  summary.overlapping_pairs = 0;
  std::map<int32_t, std::vector<PhotoCrop>> crops;  // photo -> its crops, both tiers
  for (size_t i = 0; i < set.size(); ++i) {
    if (set.photo_index[i] >= 0)
      crops[set.photo_index[i]].push_back({set.position[2 * i], set.position[2 * i + 1], set.scaled_width[i]});
  }
  for (const auto& [photo, list] : crops) {
    for (size_t a = 0; a < list.size(); ++a) {
      for (size_t b = a + 1; b < list.size(); ++b)
        summary.overlapping_pairs += crops_overlap(list[a], list[b], set.height, set.width) ? 1 : 0;
    }
  }
  return summary;
}

// ---- spectral slope ----------------------------------------------------------------------------------

double amplitude_spectrum_slope(const float* pixels, int height, int width, double f_lo, double f_hi) {
  const size_t n = static_cast<size_t>(height) * static_cast<size_t>(width);
  double mean = 0;
  for (size_t i = 0; i < n; ++i) mean += pixels[i];
  mean /= static_cast<double>(n);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  auto hann = [&](int size) {
    std::vector<double> w(static_cast<size_t>(size), 1.0);
    for (int i = 0; size > 1 && i < size; ++i)
      w[static_cast<size_t>(i)] = 0.5 - 0.5 * std::cos(kTwoPi * i / (size - 1));
    return w;
  };
  auto twiddles = [&](int size) {  // e^{-2 pi i k x / size}, indexed by (k x) mod size
    std::vector<std::complex<double>> t(static_cast<size_t>(size));
    for (int i = 0; i < size; ++i) t[static_cast<size_t>(i)] = std::polar(1.0, -kTwoPi * i / size);
    return t;
  };
  const auto window_y = hann(height), window_x = hann(width);
  const auto twiddle_y = twiddles(height), twiddle_x = twiddles(width);
  // Separable DFT (the crops are small): rows first, then columns.
  std::vector<double> windowed(n);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const size_t i = static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x);
      windowed[i] = (pixels[i] - mean) * window_y[static_cast<size_t>(y)] * window_x[static_cast<size_t>(x)];
    }
  }
  std::vector<std::complex<double>> rows(n), spectrum(n);
  for (int y = 0; y < height; ++y) {
    const double* row = windowed.data() + static_cast<size_t>(y) * static_cast<size_t>(width);
    for (int k = 0; k < width; ++k) {
      std::complex<double> sum = 0;
      for (int x = 0; x < width; ++x) sum += row[x] * twiddle_x[static_cast<size_t>(k * x % width)];
      rows[static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(k)] = sum;
    }
  }
  for (int k = 0; k < width; ++k) {
    for (int ky = 0; ky < height; ++ky) {
      std::complex<double> sum = 0;
      for (int y = 0; y < height; ++y) {
        sum += rows[static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(k)] *
               twiddle_y[static_cast<size_t>(ky * y % height)];
      }
      spectrum[static_cast<size_t>(ky) * static_cast<size_t>(width) + static_cast<size_t>(k)] = sum;
    }
  }
  const int bins = std::max(height, width);  // bin width 1 / max(H, W) cycles/px
  struct RadialBin {
    double amplitude_sum = 0;
    double frequency_sum = 0;
    double count = 0;
  };
  std::vector<RadialBin> radial(static_cast<size_t>(bins) + 2);
  for (int ky = 0; ky < height; ++ky) {
    const double fy = static_cast<double>(ky <= height / 2 ? ky : ky - height) / height;
    for (int kx = 0; kx < width; ++kx) {
      const double fx = static_cast<double>(kx <= width / 2 ? kx : kx - width) / width;
      const double f = std::sqrt(fx * fx + fy * fy);
      const size_t b = static_cast<size_t>(std::lround(f * bins));
      if (b >= radial.size()) continue;
      radial[b].amplitude_sum +=
          std::abs(spectrum[static_cast<size_t>(ky) * static_cast<size_t>(width) + static_cast<size_t>(kx)]);
      radial[b].frequency_sum += f;
      radial[b].count += 1;
    }
  }
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int m = 0;
  for (const RadialBin& bin : radial) {
    if (bin.count == 0) continue;
    const double f = bin.frequency_sum / bin.count;
    const double a = bin.amplitude_sum / bin.count;
    if (f < f_lo || f > f_hi || !(a > 0)) continue;
    const double lx = std::log(f), ly = std::log(a);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
    ++m;
  }
  if (m < 3) return std::nan("");
  return (m * sxy - sx * sy) / (m * sxx - sx * sx);
}

}  // namespace v1sysid::sim
