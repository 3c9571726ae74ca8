namespace Higher.Reference.Elementwise;

/// <summary>Double-precision special functions that .NET does not provide accurately.</summary>
internal static class SpecialFunctions
{
    private const double TwoOverSqrtPi = 1.1283791670955125738961589031215452;
    private const double TwoOverSqrtPiMinusOne = 0.1283791670955125738961589031215452;
    private const double OneOverSqrtPi = 0.56418958354775628694807945156077259;

    private const int ErfTaylorTerms = 14;

    /// <summary>
    /// Taylor coefficients erf⁽ᵏ⁾(c)/k!, k = 0..13, around c = 0.5625 + 0.125·j for j = 0..11 (cells of
    /// [0.5, 2)), computed at 200-bit precision with mpmath.taylor(mpmath.erf, c, 13) and rounded to double.
    /// The truncation error is below 1e-20 in every cell.
    /// </summary>
    private static readonly double[] ErfTaylor =
    [
        0.5736744566155919, 0.8223213592243077, -0.4625557645636731, -0.1006487080300585, 0.18249270398801165, -0.010866245988285072, -0.04662729994066633, 0.010080874630532106, 0.00857394127808135, -0.003031912726808078, -0.0011831660454485534, 0.0006171367917621966, 0.00012141100841601427, -9.75388335409264e-05,
        0.6690846628860813, 0.7033687321576001, -0.48356600335835004, -0.012821825846622918, 0.1655961704208933, -0.04169239911175879, -0.03460447064912683, 0.016724068427925814, 0.004540794449477428, -0.003945634679655738, -0.0002647275781211011, 0.000678740258481531, -3.766208217508436e-05, -9.173629058144097e-05,
        0.749464025586362, 0.5831131597762814, -0.47377944231822866, 0.06225947799694671, 0.13263356783648328, -0.06178375294594108, -0.018635851666869832, 0.01903659721931885, 0.00012658797558367995, -0.003724416732681274, 0.0005827131900680528, 0.0005233673804514279, -0.00015916254338583583, -5.391290239684369e-05,
        0.8151024010343998, 0.46854458689539813, -0.4392605502144357, 0.11835631491888964, 0.0909406607865824, -0.06960964227063529, -0.0024978296668484454, 0.01724278586805709, -0.0035060287235012142, -0.0026223412680594594, 0.0011149829830502534, 0.00023905647175343655, -0.00020628938932514923, -3.959814863844529e-06,
        0.8670582694349528, 0.36490289117800395, -0.3877093218766292, 0.15299313926994437, 0.04795883538838512, -0.06628044682104699, 0.010685302145551441, 0.012537306329873547, -0.005619929596490827, -0.0011108817427484111, 0.00123516096526574, -5.682999220386885e-05, -0.00017708195634507095, 3.696057509797708e-05,
        0.9069217197816865, 0.2754431531414426, -0.32708874435546303, 0.16713087156759407, 0.009795626458562044, -0.05479218403809519, 0.019076405792796132, 0.006573406138895404, -0.006039281188798031, 0.0003155368978142627, 0.0009987099758887623, -0.0002672638735274076, -9.842371834751307e-05, 5.5672315323763396e-05,
        0.9365685747113888, 0.20151851572462268, -0.26449305188856725, 0.16425858182762212, -0.019630343694854602, -0.038971644108487975, 0.02228485261609138, 0.0009221431519390587, -0.005077903782321014, 0.00130174965696659, 0.0005610291652366727, -0.0003468955401169207, -9.121019574677031e-06, 5.0762910251119115e-05,
        0.95794060605646, 0.14289802537593801, -0.2054159114779109, 0.1492242400410186, -0.03878295203684516, -0.02246707459111962, 0.02110759378473686, -0.0033198868303693963, -0.0033299714813510395, 0.0017092744402256313, 0.00010057852845309357, -0.0003059870237917073, 5.807022013902176e-05, 3.0309563645008397e-05,
        0.9728746138209335, 0.09821228080128248, -0.15345668875200388, 0.12711329051624323, -0.04815502863181372, -0.008037094259989391, 0.017027327562228134, -0.0056878916474258, -0.0014268803742731827, 0.0016014235058443161, -0.00024677722348333855, -0.00019194395337584875, 8.737589293152705e-05, 6.065198649592357e-06,
        0.982989716601978, 0.06542348334839115, -0.11040212815041006, 0.10239456638641427, -0.04959470600506702, 0.0027580566374959575, 0.011673848076093063, -0.006285142617043907, 0.00015000566811688483, 0.0011658589388813723, -0.0004201450662043538, -6.186877195879783e-05, 8.105893547770792e-05, -1.2319063485600119e-05,
        0.9896306257947752, 0.042240575617668474, -0.07656104330702411, 0.07843106879009798, -0.04555780832201826, 0.009500090396433842, 0.006409110938026089, -0.005580930163485854, 0.0011554780650382226, 0.0006197799778151874, -0.00043008856463146725, 4.031518970197558e-05, 5.2986387145932334e-05, -2.0460525732637946e-05,
        0.9938568063952132, 0.02643347677803051, -0.05121486125743411, 0.057341370198175555, -0.03847783196033787, 0.012617908709809179, 0.002111689147671669, -0.0041732347567013835, 0.0015689057679190179, 0.00013596121928235856, -0.0003316015534352949, 9.456598407759293e-05, 1.970572725301893e-05, -1.9210051070336058e-05,
    ];

    /// <summary>
    /// ln(1 + x) to about 1 ulp: with u = fl(1 + x), ln(1 + x) = ln(u) + ((1 + x) - u)/u to first order,
    /// and (1 + x) - u is recovered exactly as x - (u - 1). (double.LogP1 is ln(x + 1) and loses everything near 0.)
    /// </summary>
    public static double Log1p(double x)
    {
        if (double.IsNaN(x) || x == double.PositiveInfinity)
        {
            return x;
        }
        if (x <= -1.0)
        {
            return x == -1.0 ? double.NegativeInfinity : double.NaN;
        }
        double u = 1.0 + x;
        if (u == 1.0)
        {
            // |x| < 2^-53: ln(1 + x) = x - x²/2 + ..., and x²/2 is below half an ulp of x.
            return x;
        }
        return Math.Log(u) + (x - (u - 1.0)) / u;
    }

    /// <summary>
    /// erf(x) within about one ulp (checked against 120-bit mpmath): the Maclaurin series, split as
    /// x + x·T, for |x| &lt; 0.5; tabulated Taylor polynomials on 1/8-wide cells for |x| &lt; 2; and
    /// 1 - erfc(x) by its continued fraction beyond, where erfc &lt; 0.005 so its small relative
    /// error all but vanishes.
    /// </summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x))
        {
            return x;
        }
        double ax = Math.Abs(x);
        double r;
        if (ax < 0.5)
        {
            // erf(x) = x + x·T with T = (2/√π - 1) + 2/√π·Σ_{n≥1} (-1)^n x^(2n) / (n! (2n+1)): x is exact and
            // |x·T| < 0.14|x|, so the rounding of T barely reaches the result (fdlibm's efx splitting).
            double x2 = ax * ax;
            double power = 1.0;
            double tail = 0.0;
            for (int n = 1; n < 30; n++)
            {
                power *= -x2 / n;
                double term = power / (2 * n + 1);
                tail += term;
                if (Math.Abs(term) < 1e-18)
                {
                    break;
                }
            }
            double t = TwoOverSqrtPiMinusOne + TwoOverSqrtPi * tail;
            r = Math.FusedMultiplyAdd(ax, t, ax);
        }
        else if (ax < 2.0)
        {
            // Degree-13 Taylor polynomial around the centre of the 1/8-wide cell: |h| ≤ 1/16, so the
            // constant term dominates and Horner with FMA stays within about one ulp.
            int cell = (int)((ax - 0.5) * 8.0);
            double h = ax - (0.5625 + 0.125 * cell);
            int row = cell * ErfTaylorTerms;
            double p = ErfTaylor[row + ErfTaylorTerms - 1];
            for (int i = ErfTaylorTerms - 2; i >= 0; i--)
            {
                p = Math.FusedMultiplyAdd(p, h, ErfTaylor[row + i]);
            }
            r = p;
        }
        else if (ax < 6.5)
        {
            r = 1.0 - ErfcContinuedFraction(ax);
        }
        else
        {
            r = 1.0;
        }
        return x < 0 ? -r : r;
    }

    /// <summary>erfc(x) for x ≥ 4 by the continued fraction e^(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))).</summary>
    private static double ErfcContinuedFraction(double x)
    {
        // Modified Lentz evaluation of K(a_n / x) with a_n = n/2.
        const double Tiny = 1e-300;
        double f = x;
        double c = x;
        double d = 0.0;
        for (int n = 1; n < 500; n++)
        {
            double a = n * 0.5;
            d = x + a * d;
            d = d == 0 ? Tiny : d;
            c = x + a / c;
            c = c == 0 ? Tiny : c;
            d = 1.0 / d;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1.0) < 1e-16)
            {
                break;
            }
        }
        return Math.Exp(-x * x) * OneOverSqrtPi / f;
    }
}
