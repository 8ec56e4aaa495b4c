<?xml version="1.0" encoding="UTF-8"?>
<!--
  SAP IDoc INVOIC02 (XML, as an SAP file or HTTP port writes it) → export records
  (schemas/export-records.xsd), the built-in stylesheet of input_format = "idoc".

  One <invoice> per IDOC element, one <line> per E1EDP01 segment. Which segment and
  qualifier feeds which field, and why, is in docs/inputs.md ("SAP IDoc INVOIC02");
  keep the two in step.

  To adapt it (SIRET in another field, tax codes of zero-rated lines…), do not edit
  it: write your own stylesheet that imports it and overrides what differs, e.g.

    <xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
        xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xsl:import href="/path/to/idoc-invoic02-to-records.xsl"/>
      <xsl:variable name="vat-category-of-tax-code" as="map(xs:string, xs:string)"
          select="map{'V0': 'E', 'V5': 'AE'}"/>
    </xsl:stylesheet>

  and give it as the channel's input_stylesheet (input_format = "xslt").

  Values are copied as written, trimmed; converting is limited to what the IDoc format
  itself dictates (YYYYMMDD dates, SAP's trailing minus sign, price units). A value
  that cannot be converted is passed on unchanged, so that the gateway's check names it.
-->
<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:map="http://www.w3.org/2005/xpath-functions/map"
    xmlns:cg="urn:chorus-gateway:xslt-functions"
    xmlns="urn:chorus-gateway:export-records:1"
    exclude-result-prefixes="#all">

  <xsl:output method="xml" indent="yes" encoding="UTF-8"/>
  <!-- Segments not named below (E1EDKT1, E1EDK04…) are ignored, text included. -->
  <xsl:mode on-no-match="shallow-skip"/>

  <!-- The field names this version of the gateway reads, separated by spaces (given by
       the gateway), and "warning" if it reads warnings. A field missing from it (the
       stated totals on an older version) is left out rather than refused. Empty: every
       field is written (running by hand). -->
  <xsl:param name="fields" as="xs:string" select="''"/>
  <xsl:variable name="known-fields" as="xs:string*" select="tokenize($fields)"/>

  <!-- SAP tax code (E1EDP04/MWSKZ) → VAT category (BT-151). Tax codes are defined per
       SAP system, so none is known here: a line with a rate above 0 is S, and a
       zero-rated line needs its tax code in this map (override it by importing). -->
  <xsl:variable name="vat-category-of-tax-code" as="map(xs:string, xs:string)" select="map{}"/>
  <!-- Categories for which EN 16931 wants an exemption reason: E1EDP04/KTEXT gives it. -->
  <xsl:variable name="exempt-categories" as="xs:string*" select="('E', 'AE', 'K', 'G', 'O')"/>

  <!-- SAP billing type (E1EDK14 QUALF 015, VBRK-FKART) → document type (BT-3), for the
       standard SD billing types; a billing type not in the map leaves the choice to
       BSART. Credit side: G2 credit memo, RE credit for returns, S1 cancellation of an
       invoice (it gives the buyer's money back). Debit side: F1/F2 invoices, L2 debit
       memo, S2 cancellation of a credit memo (it takes a credit back). Add your own
       (ZG2…) by importing this stylesheet and overriding the map. -->
  <xsl:variable name="type-code-of-billing-type" as="map(xs:string, xs:string)" select="map{
      'F1': '380', 'F2': '380', 'L2': '380', 'S2': '380',
      'G2': '381', 'RE': '381', 'S1': '381'}"/>

  <!-- E1EDK02 qualifier of the invoice a credit memo corrects (BT-25, BT-26). SAP's
       domain EDI_QUALFR has no "original invoice" value: 011 "referenced document
       number" carries the billing document's reference (VBRK-XBLNR), which copy control
       or the output user exit fills with the corrected invoice; 016 "preceding
       document" is, in SD's document flow, the credit memo request; 009 is the credit
       memo's own number (BT-1). Read for credit notes only: on an invoice the same
       qualifier names no preceding invoice. -->
  <xsl:variable name="preceding-invoice-qualifier" as="xs:string" select="'011'"/>

  <xsl:template match="/">
    <records>
      <!-- The root is the basic type (INVOIC02) or an extension of it (ZINVOIC02…). -->
      <xsl:apply-templates select="/*/IDOC"/>
    </records>
  </xsl:template>

  <!-- The source paths are built from position() rather than path(), which counts the
       preceding siblings of each IDOC: quadratic in a file of thousands of IDocs. -->
  <xsl:template match="IDOC">
    <xsl:variable name="source" select="concat('/', name(..), '/IDOC[', position(), ']')"/>
    <xsl:variable name="k01" select="E1EDK01[1]"/>
    <!-- RS invoicing party, else LF vendor; RE bill-to party, else AG sold-to party. -->
    <xsl:variable name="supplier" select="(E1EDKA1[PARVW = 'RS'], E1EDKA1[PARVW = 'LF'])[1]"/>
    <xsl:variable name="buyer" select="(E1EDKA1[PARVW = 'RE'], E1EDKA1[PARVW = 'AG'])[1]"/>
    <xsl:variable name="sold-to" select="E1EDKA1[PARVW = 'AG'][1]"/>
    <xsl:variable name="idoc" select="concat('IDoc ', (cg:first(EDI_DC40/DOCNUM), '(no DOCNUM)')[1])"/>
    <!-- BT-10: the bill-to party's reference; a public buyer's service code often sits
         on the sold-to party instead. Taken from there only when both are the same
         establishment (same SIRET): another establishment's service would route the
         invoice to the wrong service. -->
    <xsl:variable name="sold-to-service" as="xs:string?"
        select="if (empty(cg:first($buyer/IHREZ)) and exists($sold-to) and not($sold-to is $buyer))
                then cg:first($sold-to/IHREZ) else ()"/>
    <xsl:variable name="same-establishment" as="xs:boolean"
        select="exists(cg:siret($buyer)) and cg:siret($buyer) = cg:siret($sold-to)"/>
    <xsl:variable name="type-code" select="cg:invoice-type-code(.)"/>
    <invoice source="{$source}">
      <xsl:sequence select="
          cg:field('invoice_number', (E1EDK02[QUALF = '009']/BELNR, $k01/BELNR)),
          cg:field('issue_date', cg:date((E1EDK03[IDDAT = '016']/DATUM, E1EDK03[IDDAT = '026']/DATUM,
                                          E1EDK03[IDDAT = '012']/DATUM, E1EDK02[QUALF = '009']/DATUM))),
          cg:field('type_code', $type-code),
          cg:field('currency', $k01/CURCY),
          cg:field('due_date', cg:date(E1EDK03[IDDAT = '028']/DATUM)),
          cg:field('service_code', ($buyer/IHREZ, if ($same-establishment) then $sold-to-service else ())),
          cg:field('commitment_number', E1EDK02[QUALF = '001']/BELNR),
          cg:field('contract_reference', E1EDK02[QUALF = '005']/BELNR),
          cg:preceding-invoice(., $type-code),
          cg:field('supplier_siret', $supplier/PARTN),
          cg:field('supplier_name', cg:name($supplier)),
          cg:field('supplier_vat', $k01/EIGENUINR),
          cg:field('supplier_street', cg:street($supplier)),
          cg:field('supplier_address_line2', $supplier/STRS2),
          cg:field('supplier_city', $supplier/ORT01),
          cg:field('supplier_postcode', $supplier/PSTLZ),
          cg:field('supplier_country', $supplier/LAND1),
          cg:field('buyer_siret', $buyer/PARTN),
          cg:field('buyer_name', cg:name($buyer)),
          cg:field('buyer_vat', $k01/KUNDEUINR),
          cg:field('buyer_street', cg:street($buyer)),
          cg:field('buyer_address_line2', $buyer/STRS2),
          cg:field('buyer_city', $buyer/ORT01),
          cg:field('buyer_postcode', $buyer/PSTLZ),
          cg:field('buyer_country', $buyer/LAND1),
          cg:field('total_without_vat', cg:number(E1EDS01[SUMID = '010']/SUMME)),
          cg:field('total_vat', cg:number(E1EDS01[SUMID = '005']/SUMME)),
          cg:field('total_with_vat', cg:number(E1EDS01[SUMID = '011']/SUMME))"/>
      <xsl:if test="exists($sold-to-service) and not($same-establishment)">
        <xsl:sequence select="cg:warning(concat($idoc, ': the service code (IHREZ) ', $sold-to-service,
            ' of the sold-to party (AG, SIRET ', (cg:siret($sold-to), 'none')[1],
            ') is not taken: the bill-to party (RE, SIRET ', (cg:siret($buyer), 'none')[1],
            ') is another establishment and gives none; BuyerReference (BT-10) stays empty'))"/>
      </xsl:if>
      <xsl:variable name="by-billing-type" select="cg:billing-type-code(.)"/>
      <xsl:variable name="by-bsart" select="cg:type-code($k01/BSART)"/>
      <xsl:if test="exists($by-billing-type) and exists($by-bsart) and $by-bsart = ('380', '381')
                    and $by-billing-type ne $by-bsart">
        <xsl:sequence select="cg:warning(concat($idoc, ': billing type ', cg:first(E1EDK14[QUALF = '015']/ORGID),
            ' says ', $by-billing-type, ' and BSART ', cg:first($k01/BSART), ' says ', $by-bsart,
            ': taken as ', $by-billing-type, ', the billing type'))"/>
      </xsl:if>
      <xsl:apply-templates select="E1EDP01">
        <xsl:with-param name="invoice-source" select="$source"/>
      </xsl:apply-templates>
    </invoice>
  </xsl:template>

  <xsl:template match="E1EDP01">
    <xsl:param name="invoice-source" as="xs:string"/>
    <xsl:variable name="tax" select="E1EDP04[1]"/>
    <xsl:variable name="rate" select="cg:number($tax/MSATZ)"/>
    <xsl:variable name="category" select="cg:vat-category($tax/MWSKZ, $rate)"/>
    <line source="{$invoice-source}/E1EDP01[{position()}]">
      <xsl:sequence select="
          cg:field('line_id', replace(normalize-space(POSEX), '^0+(.)', '$1')),
          cg:field('item_name', (E1EDP19[QUALF = '002']/KTEXT, E1EDP19/KTEXT)),
          cg:field('quantity', cg:number(MENGE)),
          cg:field('unit_code', MENEE),
          cg:field('unit_price', cg:unit-price(.)),
          cg:field('vat_category', $category),
          cg:field('vat_rate', $rate),
          cg:field('vat_exemption_reason', if ($category = $exempt-categories) then $tax/KTEXT else ()),
          cg:field('vat_amount', cg:number($tax/MWSBT))"/>
    </line>
  </xsl:template>

  <!-- A field element holding the first non-blank value of $values; nothing if there
       is none (the field is then empty: its default applies) or if the gateway does
       not know the field. -->
  <xsl:function name="cg:field" as="element()?">
    <xsl:param name="name" as="xs:string"/>
    <xsl:param name="values" as="item()*"/>
    <xsl:variable name="value" select="cg:first($values)"/>
    <xsl:if test="exists($value) and (empty($known-fields) or $name = $known-fields)">
      <xsl:element name="{$name}" namespace="urn:chorus-gateway:export-records:1">
        <xsl:value-of select="$value"/>
      </xsl:element>
    </xsl:if>
  </xsl:function>

  <!-- A warning for the operator, when the gateway reads warnings. -->
  <xsl:function name="cg:warning" as="element()?">
    <xsl:param name="text" as="xs:string"/>
    <xsl:if test="empty($known-fields) or 'warning' = $known-fields">
      <xsl:element name="warning" namespace="urn:chorus-gateway:export-records:1">
        <xsl:value-of select="$text"/>
      </xsl:element>
    </xsl:if>
  </xsl:function>

  <!-- A party's name as SAP splits it over NAME1..NAME4 (35 characters each): a public
       body's legal name often needs two or three of them. -->
  <xsl:function name="cg:name" as="xs:string?">
    <xsl:param name="party" as="element()?"/>
    <xsl:variable name="parts" select="($party/NAME1, $party/NAME2, $party/NAME3, $party/NAME4)
                                       ! normalize-space(.)[. ne '']"/>
    <xsl:sequence select="if (exists($parts)) then string-join($parts, ' ') else ()"/>
  </xsl:function>

  <!-- The street line as a French address writes it: the house number (HAUSN) before
       the street (STRAS), unless STRAS already holds it. -->
  <xsl:function name="cg:street" as="xs:string?">
    <xsl:param name="party" as="element()?"/>
    <xsl:variable name="street" select="cg:first($party/STRAS)"/>
    <xsl:variable name="number" select="cg:first($party/HAUSN)"/>
    <xsl:sequence select="if (exists($street) and exists($number) and not($number = tokenize($street, '[\s,]+')))
                          then concat($number, ' ', $street) else $street"/>
  </xsl:function>

  <!-- A party's PARTN without spaces, to compare two establishments. -->
  <xsl:function name="cg:siret" as="xs:string?">
    <xsl:param name="party" as="element()?"/>
    <xsl:sequence select="cg:first($party/PARTN) ! replace(., '\s', '')"/>
  </xsl:function>

  <xsl:function name="cg:first" as="xs:string?">
    <xsl:param name="values" as="item()*"/>
    <xsl:sequence select="($values ! normalize-space(string(.)))[. ne ''][1]"/>
  </xsl:function>

  <!-- IDoc dates are YYYYMMDD; 00000000 means none. -->
  <xsl:function name="cg:date" as="xs:string?">
    <xsl:param name="values" as="item()*"/>
    <xsl:variable name="text" select="cg:first($values[normalize-space(.) ne '00000000'])"/>
    <xsl:sequence select="if (matches($text, '^\d{8}$'))
                          then replace($text, '^(\d{4})(\d{2})(\d{2})$', '$1-$2-$3') else $text"/>
  </xsl:function>

  <!-- SAP writes a negative number with its sign last: 12.50- is -12.50. -->
  <xsl:function name="cg:number" as="xs:string?">
    <xsl:param name="values" as="item()*"/>
    <xsl:variable name="text" select="cg:first($values)"/>
    <xsl:sequence select="if (matches($text, '^[0-9.]+-$'))
                          then concat('-', substring($text, 1, string-length($text) - 1)) else $text"/>
  </xsl:function>

  <xsl:function name="cg:decimal" as="xs:boolean">
    <xsl:param name="text" as="xs:string?"/>
    <xsl:sequence select="exists($text) and $text castable as xs:decimal"/>
  </xsl:function>

  <!-- BT-146 is the price of one unit. VPREI is the price of PEINH units (price unit,
       e.g. 100): divided exactly. Without VPREI, the net value (E1EDP26 QUALF 003)
       divided by the quantity. -->
  <xsl:function name="cg:unit-price" as="xs:string?">
    <xsl:param name="item" as="element()"/>
    <xsl:variable name="price" select="cg:number($item/VPREI)"/>
    <xsl:variable name="per" select="cg:number($item/PEINH)"/>
    <xsl:variable name="net" select="cg:number($item/E1EDP26[QUALF = '003']/BETRG)"/>
    <xsl:variable name="quantity" select="cg:number($item/MENGE)"/>
    <xsl:sequence select="
        if (exists($price)) then
          (if (cg:decimal($price) and cg:decimal($per) and xs:decimal($per) gt 0 and xs:decimal($per) ne 1)
           then string(xs:decimal($price) div xs:decimal($per)) else $price)
        else if (cg:decimal($net) and cg:decimal($quantity) and xs:decimal($quantity) ne 0)
        then string(xs:decimal($net) div xs:decimal($quantity))
        else ()"/>
  </xsl:function>

  <!-- The category of a tax code from the map; else S when the rate is above 0; else
       the tax code itself, which the gateway then refuses naming it ('V0' is not an
       accepted code), so that the operator knows which code to map. -->
  <xsl:function name="cg:vat-category" as="xs:string?">
    <xsl:param name="tax-code" as="item()*"/>
    <xsl:param name="rate" as="xs:string?"/>
    <xsl:variable name="code" select="cg:first($tax-code)"/>
    <xsl:sequence select="
        if (exists($code) and map:contains($vat-category-of-tax-code, $code)) then $vat-category-of-tax-code($code)
        else if (cg:decimal($rate) and xs:decimal($rate) gt 0) then 'S'
        else $code"/>
  </xsl:function>

  <!-- BT-3: the billing type when the map knows it, else BSART. -->
  <xsl:function name="cg:invoice-type-code" as="xs:string?">
    <xsl:param name="idoc" as="element()"/>
    <xsl:sequence select="(cg:billing-type-code($idoc), cg:type-code($idoc/E1EDK01[1]/BSART))[1]"/>
  </xsl:function>

  <xsl:function name="cg:billing-type-code" as="xs:string?">
    <xsl:param name="idoc" as="element()"/>
    <xsl:variable name="billing-type" select="cg:first($idoc/E1EDK14[QUALF = '015']/ORGID)"/>
    <xsl:sequence select="if (exists($billing-type) and map:contains($type-code-of-billing-type, $billing-type))
                          then $type-code-of-billing-type($billing-type) else ()"/>
  </xsl:function>

  <!-- BT-25/BT-26 of a credit note, unless the segment names the credit memo itself. -->
  <xsl:function name="cg:preceding-invoice" as="element()*">
    <xsl:param name="idoc" as="element()"/>
    <xsl:param name="type-code" as="xs:string?"/>
    <xsl:variable name="reference" select="$idoc/E1EDK02[QUALF = $preceding-invoice-qualifier]
        [cg:first(BELNR) ne cg:first(($idoc/E1EDK02[QUALF = '009']/BELNR, $idoc/E1EDK01/BELNR))][1]"/>
    <xsl:if test="$type-code = '381'">
      <xsl:sequence select="cg:field('preceding_invoice', $reference/BELNR),
                            cg:field('preceding_invoice_date', cg:date($reference/DATUM))"/>
    </xsl:if>
  </xsl:function>

  <!-- E1EDK01/BSART: INVO invoice, CRME credit memo; any other value is passed on and
       refused by the gateway, naming it. -->
  <xsl:function name="cg:type-code" as="xs:string?">
    <xsl:param name="document-type" as="item()*"/>
    <xsl:variable name="code" select="cg:first($document-type)"/>
    <xsl:sequence select="if ($code = 'INVO') then '380' else if ($code = 'CRME') then '381' else $code"/>
  </xsl:function>

</xsl:stylesheet>
