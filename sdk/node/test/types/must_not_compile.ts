// Must NOT compile (types_check_strictly.test.mjs checks that tsc reports the error):
// proves the strict check sees the declarations.
import { Lane } from '../../index.js';

const lane = new Lane();
const size: string = lane.size;
void size;
