// One file, so the production build and `next dev` never run at the same
// time as each other: describe blocks of a file run in order.
import { developmentTests } from "./development.js";
import { productionTests } from "./production.js";

productionTests();
developmentTests();
