// Reference outputs of the METEOR 1.5 jar's internals, for the `metrics` crate's native METEOR tests.
// Run by scripts/metrics/meteor_native_fixture.py (which compiles it against pycocoevalcap's
// meteor-1.5.jar); not part of any build. Reads stdin, writes one line per input line:
//   stem   : a word per line            -> org.tartarus.snowball.ext.englishStemmer output
//   norm   : a caption per line         -> Normalizer.normalizeLine(line, English, keep punctuation), lowercased
//   stats  : "ref1 ||| ... ||| hyp"     -> the 23 sufficient statistics with the modules given as
//            further arguments (e.g. "stats exact stem synonym"), English "rank" parameters, -norm.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;

import edu.cmu.meteor.scorer.MeteorConfiguration;
import edu.cmu.meteor.scorer.MeteorScorer;
import edu.cmu.meteor.scorer.MeteorStats;
import edu.cmu.meteor.util.Constants;
import edu.cmu.meteor.util.Normalizer;
import org.tartarus.snowball.ext.englishStemmer;

public class MeteorReference {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        String mode = args[0];
        String line;
        if (mode.equals("stem")) {
            englishStemmer s = new englishStemmer();
            while ((line = in.readLine()) != null) {
                s.setCurrent(line);
                s.stem();
                out.println(s.getCurrent());
            }
        } else if (mode.equals("norm")) {
            while ((line = in.readLine()) != null) {
                out.println(Normalizer.normalizeLine(line, Constants.LANG_EN, true).toLowerCase());
            }
        } else if (mode.equals("stats")) {
            MeteorConfiguration config = new MeteorConfiguration();
            config.setLanguage("en");
            config.setNormalization(Constants.NORMALIZE_KEEP_PUNCT);
            ArrayList<String> modules = new ArrayList<String>(Arrays.asList(args).subList(1, args.length));
            config.setModulesByName(modules);
            ArrayList<Double> all = new ArrayList<Double>(Arrays.asList(1.0, 0.6, 0.8, 0.6));
            config.setModuleWeights(new ArrayList<Double>(all.subList(0, modules.size())));
            config.setParameters(new ArrayList<Double>(Arrays.asList(0.85, 0.20, 0.60, 0.75)));
            MeteorScorer scorer = new MeteorScorer(config);
            while ((line = in.readLine()) != null) {
                String[] part = line.split("\\|\\|\\|");
                ArrayList<String> refs = new ArrayList<String>();
                for (int i = 0; i < part.length - 1; i++)
                    refs.add(part[i].trim());
                String test = part[part.length - 1].trim();
                MeteorStats stats = scorer.getMeteorStats(test, refs);
                out.println(stats.toString());
            }
        } else {
            throw new IllegalArgumentException("mode: stem | norm | stats <modules...>");
        }
        out.flush();
    }
}
